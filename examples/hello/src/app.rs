//! The hello app's logic, shared by the wasm build (`main.rs`, wasi:http) and the native
//! build (`examples/native`, hyper): only the entry points differ.

/// The response body.
pub(crate) const BODY: &str = "Hello from edge!\n";
/// The response content type.
pub(crate) const CONTENT_TYPE: &str = "text/plain; charset=utf-8";
