"""The exception hierarchy, the ErrorKind mapping, and invalid inputs."""

from __future__ import annotations

import pytest

import edgemodule
from edgemodule import Message, ModuleClient, _native, errors
from edgemodule.errors import EdgeError

BUILTIN_BASES = {
    "INVALID_ARGUMENT": ValueError,
    "UNAUTHORIZED": PermissionError,
    "CONNECTION_REFUSED": ConnectionError,
    "CONNECTION_LOST": ConnectionError,
    "TIMEOUT": TimeoutError,
    "MESSAGE_TOO_LARGE": ValueError,
    "TLS": ConnectionError,
    "IO": OSError,
    "UNSUPPORTED": NotImplementedError,
    "NOT_FOUND": LookupError,
}


def test_error_kinds_are_exposed() -> None:
    kinds = _native.error_kinds()
    assert [name for name, _, _ in kinds] == list(edgemodule.ERROR_KINDS)
    assert [number for _, number, _ in kinds] == list(range(1, len(kinds) + 1))
    assert "TIMEOUT" in edgemodule.ERROR_KINDS


@pytest.mark.parametrize("name,number,retryable", _native.error_kinds())
def test_every_error_kind_maps_to_its_class(name: str, number: int, retryable: bool) -> None:
    with pytest.raises(EdgeError) as caught:
        _native._raise_error_kind(name)
    exc = caught.value
    assert type(exc) is errors.error_class(name)
    assert exc.code == name
    assert type(exc).retryable is retryable
    assert str(exc) == f"raised for {name}"
    if name in BUILTIN_BASES:
        assert isinstance(exc, BUILTIN_BASES[name])


def test_hierarchy_does_not_shadow_builtins() -> None:
    import builtins

    for name in errors.__all__:
        assert not hasattr(builtins, name), f"{name} shadows a builtin"
    assert issubclass(errors.OperationTimeoutError, TimeoutError)
    assert issubclass(errors.InvalidArgumentError, ValueError)
    assert issubclass(errors.ConnectionLostError, ConnectionError)
    assert issubclass(errors.UnauthorizedError, PermissionError)
    assert errors.OperationTimeout is errors.OperationTimeoutError
    assert len({errors.error_class(k) for k in edgemodule.ERROR_KINDS}) == len(edgemodule.ERROR_KINDS)


def test_unknown_kind_is_invalid_argument() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        _native._raise_error_kind("NOPE")


def test_message_conversions() -> None:
    m = Message("héllo", message_id="id", content_type="application/json", custom_properties={"k": "v"})
    assert m.data == "héllo".encode() and m.body == m.data
    m.data = bytearray(b"\x00\x01")
    assert m.data == b"\x00\x01"
    m.custom_properties["x"] = "y"
    assert m.get_size() > 2
    with pytest.raises(TypeError):
        Message(123)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidStateError):
        m.complete()
    assert m.input_name is None


def test_bad_connection_string() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        ModuleClient.create_from_connection_string("HostName=x;nonsense")


def test_unknown_option_is_type_error() -> None:
    with pytest.raises(TypeError, match="keep_alvie"):
        ModuleClient.create_from_connection_string("HostName=x", keep_alvie=3)


@pytest.mark.parametrize("options", [{"keep_alive": 0}, {"operation_timeout": -1.0}, {"mqtt_port": 0}])
def test_out_of_range_options(options: dict) -> None:
    cs = "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=" + "a" * 44
    with pytest.raises(errors.InvalidArgumentError):
        ModuleClient.create_from_connection_string(cs, **options)


def test_environment_missing_is_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("IOTEDGE_") or key.startswith("EdgeHub"):
            monkeypatch.delenv(key)
    with pytest.raises(errors.ConfigurationError):
        ModuleClient.create_from_edge_environment()


def test_unreachable_hub_is_connection_failed(hub) -> None:  # type: ignore[no-untyped-def]
    options = hub.options()
    cs = hub.connection_string("sender")
    hub.stop()
    options["connection_retry"] = False
    with pytest.raises((errors.ConnectionFailedError, errors.OperationTimeoutError)) as caught:
        ModuleClient.create_from_connection_string(cs, hub.ca_pem, **options)
    assert caught.value.retryable


def test_invalid_inputs_against_hub(hub) -> None:  # type: ignore[no-untyped-def]
    with ModuleClient.create_from_connection_string(hub.connection_string("sender"), hub.ca_pem, **hub.options()) as c:
        with pytest.raises(errors.InvalidArgumentError) as e:
            c.send_message_to_output(Message(b"x"), "bad name")
        assert isinstance(e.value, ValueError)
        with pytest.raises(errors.InvalidArgumentError):
            c.send_message_to_output(Message(b"x", custom_properties={"$.mid": "x"}), "out1")
        with pytest.raises(TypeError):
            c.send_message_to_output(Message(b"x", custom_properties={"k": 1}), "out1")  # type: ignore[dict-item]
        with pytest.raises(errors.MessageTooLargeError):
            c.send_message_to_output(b"x" * (300 * 1024), "out1")
        with pytest.raises(errors.InvalidArgumentError):
            c.patch_twin_reported_properties([1, 2])  # type: ignore[arg-type]
        with pytest.raises(errors.OperationTimeoutError):
            c.receive_message("in1", timeout=0.2)
        with pytest.raises(errors.InvalidArgumentError):
            c.receive_message("in1", timeout=-1)
        with pytest.raises(errors.InvalidArgumentError):
            c.invoke_method(c.device_id, "receiver", "m", response_timeout=1)
        with pytest.raises(errors.NotFoundError):
            c.invoke_method(c.device_id, "receiver", "m", response_timeout=5)
        with pytest.raises(TypeError):
            c.on_message("in1", 42)  # type: ignore[arg-type]
    with pytest.raises(errors.ClientClosedError):
        c.send_message_to_output(b"x", "out1")
