//! Coalescing a pre-initialized component's data segments.
//!
//! Wizer writes a snapshot's memory as one data segment per run of non-zero bytes, up to
//! 10 000 of them; a QuickJS heap reaches that cap. wasmtime keeps a base and a length per
//! segment in every instance's context and writes them all at each instantiation, so an
//! app with 10 000 segments pays for 10 000 writes per request (and a larger context to
//! clear). Merging segments whose gap is small costs a few zero bytes in the file and
//! nothing at run time: memory images are built per page anyway.

use anyhow::{Context, Result, bail};
use std::ops::Range;
use wasm_encoder::{ConstExpr, DataCountSection, DataSection, Section};
use wasmparser::{BinaryReader, DataKind, DataSectionReader, Operator};

/// Segments closer than this are merged (the zeros between them become data).
pub const MAX_GAP: u32 = 4096;

/// Section ids (core modules and components share the framing).
const CORE_MODULE_SECTION: u8 = 1;
const COMPONENT_SECTION: u8 = 4;
const DATA_SECTION: u8 = 11;
const DATA_COUNT_SECTION: u8 = 12;

/// Returns `component` with the data segments of each core module coalesced (segments
/// within `max_gap` bytes of each other merged), and the number of segments before and
/// after. Modules with passive segments or non-constant offsets are left as they are.
pub fn coalesce(component: &[u8], max_gap: u32) -> Result<(Vec<u8>, usize, usize)> {
    let mut counts = (0, 0);
    let out = rewrite(component, true, max_gap, &mut counts)?;
    Ok((out, counts.0, counts.1))
}

/// Rewrites one binary (component if `component`, else core module): copies every section,
/// descending into nested modules and components, and rewrites data sections.
fn rewrite(
    bytes: &[u8],
    component: bool,
    max_gap: u32,
    counts: &mut (usize, usize),
) -> Result<Vec<u8>> {
    if bytes.len() < 8 {
        bail!("truncated wasm header");
    }
    let sections = split_sections(bytes)?;
    let mut plan = None;
    if !component && let Some((_, range)) = sections.iter().find(|(id, _)| *id == DATA_SECTION) {
        plan = merge_data(&bytes[range.clone()], range.start, max_gap)?;
    }
    let mut out = bytes[..8].to_vec();
    for (id, range) in &sections {
        let body = &bytes[range.clone()];
        match (*id, component, &plan) {
            (CORE_MODULE_SECTION | COMPONENT_SECTION, true, _) => {
                let inner = rewrite(body, *id == COMPONENT_SECTION, max_gap, counts)?;
                push_section(&mut out, *id, &inner);
            }
            (DATA_SECTION, false, Some((before, section))) => {
                counts.0 += before;
                counts.1 += section.len() as usize;
                section.append_to(&mut out);
            }
            (DATA_COUNT_SECTION, false, Some((_, section))) => {
                DataCountSection {
                    count: section.len(),
                }
                .append_to(&mut out);
            }
            _ => push_section(&mut out, *id, body),
        }
    }
    Ok(out)
}

/// The sections of a binary: id and content range.
fn split_sections(bytes: &[u8]) -> Result<Vec<(u8, Range<usize>)>> {
    let mut sections = Vec::new();
    let mut reader = BinaryReader::new(&bytes[8..], 8);
    while !reader.eof() {
        let id = reader.read_u8().context("reading a section id")?;
        let size = reader.read_var_u32().context("reading a section size")? as usize;
        let start = reader.original_position();
        let end = start
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .context("section past the end")?;
        reader.read_bytes(size).context("reading a section")?;
        sections.push((id, start..end));
    }
    Ok(sections)
}

fn push_section(out: &mut Vec<u8>, id: u8, body: &[u8]) {
    wasm_encoder::RawSection { id, data: body }.append_to(out);
}

/// The merged data section and the original segment count, or `None` when nothing can
/// be merged safely (then nothing is changed).
///
/// Wizer keeps the original segments as empty passive ones, for their indices, and appends
/// the snapshot as active segments. Passive segments keep their place; the active segments
/// after the last passive one are merged, which renumbers only segments no instruction can
/// name (active segments are dropped once applied).
fn merge_data(content: &[u8], offset: usize, max_gap: u32) -> Result<Option<(usize, DataSection)>> {
    let reader = DataSectionReader::new(BinaryReader::new(content, offset))?;
    let mut passive: Vec<Vec<u8>> = Vec::new();
    let mut active: Vec<(u32, u32, Vec<u8>)> = Vec::new();
    for data in reader {
        let data = data?;
        match data.kind {
            DataKind::Passive if active.is_empty() => passive.push(data.data.to_vec()),
            DataKind::Passive => return Ok(None),
            DataKind::Active {
                memory_index,
                offset_expr,
            } => {
                let start = match offset_expr.get_operators_reader().read()? {
                    Operator::I32Const { value } => value as u32,
                    _ => return Ok(None),
                };
                active.push((memory_index, start, data.data.to_vec()));
            }
        }
    }
    let before = passive.len() + active.len();
    // Merging writes zeros over the gaps, which is only right when no segment lands in a
    // gap: segments sorted and disjoint, as Wizer writes them. Anything else stays as is.
    let sorted = active.windows(2).all(|w| {
        let (a, b) = (&w[0], &w[1]);
        a.0 < b.0 || (a.0 == b.0 && a.1 as u64 + a.2.len() as u64 <= b.1 as u64)
    });
    if !sorted || active.len() < 2 {
        return Ok(None);
    }
    let mut merged: Vec<(u32, u32, Vec<u8>)> = Vec::with_capacity(active.len());
    for (memory, start, data) in active {
        if let Some((last_memory, last_start, last)) = merged.last_mut() {
            let gap = start as u64 - (*last_start as u64 + last.len() as u64);
            if *last_memory == memory && gap <= u64::from(max_gap) {
                last.resize((start - *last_start) as usize, 0);
                last.extend_from_slice(&data);
                continue;
            }
        }
        merged.push((memory, start, data));
    }
    let mut section = DataSection::new();
    for data in passive {
        section.passive(data);
    }
    for (memory, start, data) in merged {
        section.active(memory, &ConstExpr::i32_const(start as i32), data);
    }
    Ok(Some((before, section)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_with_segments(segments: &[(u32, &[u8])]) -> Vec<u8> {
        let mut module = wasm_encoder::Module::new();
        let mut memories = wasm_encoder::MemorySection::new();
        memories.memory(wasm_encoder::MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        module.section(&memories);
        module.section(&DataCountSection {
            count: segments.len() as u32 + 1,
        });
        let mut data = DataSection::new();
        data.passive([]);
        for (offset, bytes) in segments {
            data.active(
                0,
                &ConstExpr::i32_const(*offset as i32),
                bytes.iter().copied(),
            );
        }
        module.section(&data);
        module.finish()
    }

    fn memory_after(module: &[u8]) -> Vec<u8> {
        let mut memory = vec![0u8; 65536];
        let sections = split_sections(module).unwrap();
        let (_, range) = sections.iter().find(|(id, _)| *id == DATA_SECTION).unwrap();
        let reader =
            DataSectionReader::new(BinaryReader::new(&module[range.clone()], range.start)).unwrap();
        for data in reader {
            let data = data.unwrap();
            let DataKind::Active { offset_expr, .. } = data.kind else {
                continue;
            };
            let Operator::I32Const { value } = offset_expr.get_operators_reader().read().unwrap()
            else {
                panic!()
            };
            memory[value as usize..value as usize + data.data.len()].copy_from_slice(data.data);
        }
        memory
    }

    #[test]
    fn merges_close_segments_and_keeps_memory_identical() {
        let module =
            module_with_segments(&[(16, b"ab"), (20, b"cd"), (9000, b"far"), (9010, b"x")]);
        let mut counts = (0, 0);
        let out = rewrite(&module, false, 100, &mut counts).unwrap();
        // The leading passive segment keeps its index; four active become two.
        assert_eq!(counts, (5, 3));
        assert!(out.len() < module.len() + 100);
        wasmparser::Validator::new().validate_all(&out).unwrap();
        assert_eq!(memory_after(&module), memory_after(&out));
    }

    #[test]
    fn out_of_order_segments_are_left_alone() {
        let module = module_with_segments(&[(100, b"late"), (0, b"early"), (102, b"XY")]);
        let mut counts = (0, 0);
        let out = rewrite(&module, false, 4096, &mut counts).unwrap();
        assert_eq!(out, module);
        assert_eq!(memory_after(&module), memory_after(&out));
    }
}
