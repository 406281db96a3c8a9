//! The runtime builder the language bindings share. The core itself never builds a runtime;
//! each native library (C, Python, Node) builds exactly one, process-wide, from here.

/// A multi-thread tokio runtime with two named workers: enough for a module's I/O on the small
/// devices Edge modules run on.
pub fn build_binding_runtime(thread_name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(thread_name).enable_all().build()
}
