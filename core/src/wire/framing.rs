//! MQTT 3.1.1 packet framing over a byte stream, shared by the client driver and the hub. The
//! packet codec itself is rumqttc's (`mqttbytes::v4`); this only adapts it to a read buffer.

use bytes::BytesMut;
pub use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::Error as CodecError;

/// Takes one complete packet off the front of `buf`, or `Ok(None)` when more bytes are needed.
pub fn decode(buf: &mut BytesMut, max_packet_bytes: usize) -> Result<Option<Packet>, CodecError> {
    match Packet::read(buf, max_packet_bytes) {
        Ok(packet) => Ok(Some(packet)),
        Err(CodecError::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Appends `packet` to `out`.
pub fn encode(packet: &Packet, out: &mut BytesMut) -> Result<(), CodecError> {
    packet.write(out, usize::MAX).map(|_| ())
}
