//! Stage 1: read an app's bytes and check they can be a `wasi:http/proxy` component.
//!
//! This stage is cheap (a header check and a scan of the top-level exports); the full
//! validation happens when the component is compiled and linked.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The export a component provides to be pre-initialized with Wizer.
pub const WIZER_INIT_EXPORT: &str = "wizer-initialize";

/// Bytes that look like a component, with what later stages need to know about them.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The component as uploaded or read from disk.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, lowercase hex: the app's content address.
    pub digest: String,
}

impl Validated {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<Validated> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        Validated::from_bytes(bytes)
    }

    /// Checks `bytes` are a WebAssembly component (not a core module, not something else).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Validated> {
        check_header(&bytes)?;
        let digest = digest(&bytes);
        Ok(Validated { bytes, digest })
    }
}

/// SHA-256 of a component, lowercase hex: its content address.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The custom section edge appends to a snapshot it made (and so to what `edge build`
/// writes): the component keeps its `wizer-initialize` export, but is already initialized.
pub const PREINITIALIZED_SECTION: &str = "edge:preinitialized";

/// Whether a component exports `wizer-initialize` at its top level, asking to be
/// pre-initialized, and is not already a snapshot.
pub fn wants_preinit(component: &[u8]) -> Result<bool> {
    Ok(exports_function(component, WIZER_INIT_EXPORT)? && !is_preinitialized(component)?)
}

/// Whether the outermost component carries [`PREINITIALIZED_SECTION`].
pub fn is_preinitialized(bytes: &[u8]) -> Result<bool> {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("malformed component")? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::CustomSection(reader)
                if depth == 1 && reader.name() == PREINITIALIZED_SECTION =>
            {
                return Ok(true);
            }
            _ => {}
        }
    }
    Ok(false)
}

/// Marks a snapshot as pre-initialized (see [`PREINITIALIZED_SECTION`]).
pub fn mark_preinitialized(component: &mut Vec<u8>) {
    use wasm_encoder::Section;
    wasm_encoder::CustomSection {
        name: PREINITIALIZED_SECTION.into(),
        data: std::borrow::Cow::Borrowed(b"wizer"),
    }
    .append_to(component);
}

fn check_header(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!("not a WebAssembly file (it does not start with the `\\0asm` magic bytes)");
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        bail!(
            "this is a core WebAssembly module, not a component: build it for \
             `wasm32-wasip2` (or wrap it with `wasm-tools component new`) so that it \
             exports `wasi:http/incoming-handler`"
        );
    }
    if !wasmparser::Parser::is_component(bytes) {
        bail!("unsupported WebAssembly binary version or layer");
    }
    Ok(())
}

/// Scans only the outermost component's export sections for a function named `name`.
fn exports_function(bytes: &[u8], name: &str) -> Result<bool> {
    use wasmparser::{ComponentExternalKind, Parser, Payload};
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("malformed component")? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.context("malformed component export section")?;
                    if export.name.name == name && export.kind == ComponentExternalKind::Func {
                        return Ok(true);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_component() {
        let err = Validated::from_bytes(b"hello world".to_vec()).unwrap_err();
        assert!(err.to_string().contains("not a WebAssembly file"), "{err}");
        let core = b"\0asm\x01\0\0\0".to_vec();
        let err = Validated::from_bytes(core).unwrap_err();
        assert!(err.to_string().contains("core WebAssembly module"), "{err}");
        let empty_component = b"\0asm\x0d\0\x01\0".to_vec();
        let v = Validated::from_bytes(empty_component).unwrap();
        assert!(!wants_preinit(&v.bytes).unwrap());
        assert_eq!(v.digest.len(), 64);
        let mut marked = v.bytes.clone();
        assert!(!is_preinitialized(&marked).unwrap());
        mark_preinitialized(&mut marked);
        assert!(is_preinitialized(&marked).unwrap());
        Validated::from_bytes(marked).unwrap();
    }
}
