//! Cuts the General-MIDI SoundFont that instrec embeds out of FluidR3_GM.sf2.
//!
//! It keeps only the presets `instrec synth` plays ([`instrec::data::synth::presets_used`]), the
//! instruments and samples they reference (for the drum kit only the zones of the keys it plays),
//! and resamples every sample above 22,050 Hz to 22,050 Hz with instrec's torchaudio resampler:
//! the features stop at 11,025 Hz, so nothing the models see is lost.
//!
//! ```sh
//! cargo run --release --example cut-soundfont -- /usr/share/sounds/sf2/FluidR3_GM.sf2 assets/instrec-gm.sf2.z
//! ```
//! (Debian's `fluid-soundfont-gm` installs that file.) The output is packed as
//! `instrec::data::soundfont::pack` says. The same input gives the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use instrec::data::sf2::{info_string, riff_chunk, riff_list};
use instrec::data::soundfont;
use instrec::data::synth::{NoteRange, PresetUse, presets_used};

/// The rate every sample above it is brought down to.
const TARGET_RATE: u32 = 22_050;
/// Zero samples the SoundFont 2.01 specification wants after every sample.
const GUARD: usize = 46;

// Generator operators (SoundFont 2.01, section 8.1.2).
const GEN_START_OFFSET: u16 = 0;
const GEN_END_OFFSET: u16 = 1;
const GEN_STARTLOOP_OFFSET: u16 = 2;
const GEN_ENDLOOP_OFFSET: u16 = 3;
const GEN_START_COARSE: u16 = 4;
const GEN_END_COARSE: u16 = 12;
const GEN_INSTRUMENT: u16 = 41;
const GEN_KEY_RANGE: u16 = 43;
const GEN_VEL_RANGE: u16 = 44;
const GEN_STARTLOOP_COARSE: u16 = 45;
const GEN_ENDLOOP_COARSE: u16 = 50;
const GEN_SAMPLE_ID: u16 = 53;
const OFFSET_GENS: [u16; 8] = [
    GEN_START_OFFSET,
    GEN_END_OFFSET,
    GEN_STARTLOOP_OFFSET,
    GEN_ENDLOOP_OFFSET,
    GEN_START_COARSE,
    GEN_END_COARSE,
    GEN_STARTLOOP_COARSE,
    GEN_ENDLOOP_COARSE,
];

// Sample types (SoundFont 2.01, section 7.10).
const SAMPLE_MONO: u16 = 1;
const SAMPLE_RIGHT: u16 = 2;
const SAMPLE_LEFT: u16 = 4;

type Res<T> = Result<T, String>;

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The chunks of a RIFF list body: (id, data).
fn chunks(mut b: &[u8]) -> Res<Vec<([u8; 4], &[u8])>> {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let id: [u8; 4] = b[..4].try_into().unwrap();
        let n = u32_at(b, 4) as usize;
        let data = b
            .get(8..8 + n)
            .ok_or_else(|| format!("chunk {} runs past the end", String::from_utf8_lossy(&id)))?;
        out.push((id, data));
        b = &b[(8 + n + (n & 1)).min(b.len())..];
    }
    Ok(out)
}

/// A LIST chunk's body by its type.
fn list<'a>(top: &[([u8; 4], &'a [u8])], kind: &[u8; 4]) -> Res<&'a [u8]> {
    top.iter()
        .find(|(id, d)| id == b"LIST" && d.len() >= 4 && &d[..4] == kind)
        .map(|(_, d)| &d[4..])
        .ok_or_else(|| format!("no LIST {} chunk", String::from_utf8_lossy(kind)))
}

fn sub<'a>(cs: &[([u8; 4], &'a [u8])], id: &[u8; 4]) -> Res<&'a [u8]> {
    cs.iter()
        .find(|(i, _)| i == id)
        .map(|(_, d)| *d)
        .ok_or_else(|| format!("no {} chunk", String::from_utf8_lossy(id)))
}

/// Fixed-size records of a pdta sub-chunk, the terminal record included.
fn records(d: &[u8], size: usize) -> Vec<&[u8]> {
    d.chunks_exact(size).collect()
}

/// A zone: its generators (operator, amount) and modulators (raw 10-byte records).
#[derive(Clone)]
struct Zone {
    gens: Vec<(u16, u16)>,
    mods: Vec<Vec<u8>>,
}

impl Zone {
    fn gen_value(&self, op: u16) -> Option<u16> {
        self.gens.iter().find(|g| g.0 == op).map(|g| g.1)
    }
    /// The zone's (keys, velocities) rectangle, inclusive; the whole range where it sets none.
    fn range(&self) -> NoteRange {
        let r = |op| {
            self.gen_value(op)
                .map(|v| ((v & 0xff) as u8, (v >> 8) as u8))
                .unwrap_or((0, 127))
        };
        NoteRange {
            keys: r(GEN_KEY_RANGE),
            velocities: r(GEN_VEL_RANGE),
        }
    }
}

/// The notes of `a` that `b` also covers, if any.
fn intersect(a: NoteRange, b: NoteRange) -> Option<NoteRange> {
    let both = |(a0, a1): (u8, u8), (b0, b1): (u8, u8)| {
        let (lo, hi) = (a0.max(b0), a1.min(b1));
        (lo <= hi).then_some((lo, hi))
    };
    Some(NoteRange {
        keys: both(a.keys, b.keys)?,
        velocities: both(a.velocities, b.velocities)?,
    })
}

/// The stereo pairs (right half → left half) whose halves have the same length, loops, rate and
/// pitch. FluidR3's sample links are unusable (they all point at sample 0), so halves are paired
/// by name, `NAME(R)` with `NAME(L)`. Both halves then play the pair's mean: the mono mix, which
/// the features are made of, stays as it was (the pans mirror each other), and a third of the
/// data goes.
fn stereo_pairs(shdr: &[&[u8]]) -> BTreeMap<usize, usize> {
    let name = |h: &[u8]| {
        String::from_utf8_lossy(&h[..20])
            .trim_end_matches('\0')
            .to_string()
    };
    let by_name: BTreeMap<String, usize> =
        shdr.iter().enumerate().map(|(i, h)| (name(h), i)).collect();
    let geometry = |h: &[u8]| {
        let start = u32_at(h, 20);
        [u32_at(h, 24), u32_at(h, 28), u32_at(h, 32)].map(|p| p.wrapping_sub(start))
    };
    let mut pairs = BTreeMap::new();
    for (right, h) in shdr.iter().enumerate() {
        let n = name(h);
        let Some(base) = n.strip_suffix("(R)") else {
            continue;
        };
        let Some(&left) = by_name.get(&format!("{base}(L)")) else {
            continue;
        };
        let l = shdr[left];
        if u16_at(h, 44) == SAMPLE_RIGHT
            && u16_at(l, 44) == SAMPLE_LEFT
            && geometry(h) == geometry(l)
            && h[36..42] == l[36..42]
        {
            pairs.insert(right, left);
        }
    }
    pairs
}

/// The zones of header `i` (bag indices from `bag_of`), read from bag/gen/mod records.
fn zones(
    bag_of: impl Fn(usize) -> usize,
    i: usize,
    bags: &[&[u8]],
    gens: &[&[u8]],
    mods: &[&[u8]],
) -> Vec<Zone> {
    (bag_of(i)..bag_of(i + 1))
        .map(|b| {
            let (g0, g1) = (u16_at(bags[b], 0) as usize, u16_at(bags[b + 1], 0) as usize);
            let (m0, m1) = (u16_at(bags[b], 2) as usize, u16_at(bags[b + 1], 2) as usize);
            Zone {
                gens: gens[g0..g1]
                    .iter()
                    .map(|g| (u16_at(g, 0), u16_at(g, 2)))
                    .collect(),
                mods: mods[m0..m1].iter().map(|m| m.to_vec()).collect(),
            }
        })
        .collect()
}

/// Writes headers + zones as (hdr, bag, mod, gen) chunks, each header's bag index at `bag_at`.
fn write_zones(
    headers: &[(Vec<u8>, Vec<Zone>)],
    terminal: &[u8],
    bag_at: usize,
) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let (mut hdr, mut bag, mut md, mut gn) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut nbag, mut ngen, mut nmod) = (0u16, 0u16, 0u16);
    let push_header = |hdr: &mut Vec<u8>, rec: &[u8], nbag: u16| {
        let mut rec = rec.to_vec();
        rec[bag_at..bag_at + 2].copy_from_slice(&nbag.to_le_bytes());
        hdr.extend(rec);
    };
    for (rec, zs) in headers {
        push_header(&mut hdr, rec, nbag);
        for z in zs {
            bag.extend(ngen.to_le_bytes());
            bag.extend(nmod.to_le_bytes());
            nbag += 1;
            for (op, amount) in &z.gens {
                gn.extend(op.to_le_bytes());
                gn.extend(amount.to_le_bytes());
                ngen += 1;
            }
            for m in &z.mods {
                md.extend(m);
                nmod += 1;
            }
        }
    }
    push_header(&mut hdr, terminal, nbag);
    bag.extend(ngen.to_le_bytes());
    bag.extend(nmod.to_le_bytes());
    md.extend([0u8; 10]);
    gn.extend([0u8; 4]);
    (hdr, bag, md, gn)
}

fn cut(src: &[u8], wanted: &[PresetUse]) -> Res<Vec<u8>> {
    if src.len() < 12 || &src[..4] != b"RIFF" || &src[8..12] != b"sfbk" {
        return Err("not a SoundFont (RIFF sfbk)".into());
    }
    let top = chunks(&src[12..])?;
    let info = chunks(list(&top, b"INFO")?)?;
    let sdta = chunks(list(&top, b"sdta")?)?;
    let pdta = chunks(list(&top, b"pdta")?)?;
    let smpl = sub(&sdta, b"smpl")?;
    let wave: Vec<i16> = smpl
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();

    let phdr = records(sub(&pdta, b"phdr")?, 38);
    let pbag = records(sub(&pdta, b"pbag")?, 4);
    let pmod = records(sub(&pdta, b"pmod")?, 10);
    let pgen = records(sub(&pdta, b"pgen")?, 4);
    let inst = records(sub(&pdta, b"inst")?, 22);
    let ibag = records(sub(&pdta, b"ibag")?, 4);
    let imod = records(sub(&pdta, b"imod")?, 10);
    let igen = records(sub(&pdta, b"igen")?, 4);
    let shdr = records(sub(&pdta, b"shdr")?, 46);

    // The notes that reach each instrument: what a preset plays, within its zone's ranges.
    let preset_zones = |i: usize| zones(|i| u16_at(phdr[i], 24) as usize, i, &pbag, &pgen, &pmod);
    let inst_zones = |i: usize| zones(|i| u16_at(inst[i], 20) as usize, i, &ibag, &igen, &imod);
    let mut found = Vec::new();
    let mut reach: BTreeMap<usize, Vec<NoteRange>> = BTreeMap::new();
    for w in wanted {
        let i = (0..phdr.len() - 1)
            .find(|&i| u16_at(phdr[i], 20) == w.program && u16_at(phdr[i], 22) == w.bank)
            .ok_or_else(|| format!("no preset bank {} program {}", w.bank, w.program))?;
        for z in preset_zones(i) {
            if let Some(instrument) = z.gen_value(GEN_INSTRUMENT) {
                let notes = w.notes.iter().filter_map(|&n| intersect(n, z.range()));
                reach.entry(instrument as usize).or_default().extend(notes);
            }
        }
        found.push((i, w));
    }
    // Instruments keep the zones those notes sound; one with no sample zone left is dropped.
    let mut kept_inst: BTreeMap<usize, Vec<Zone>> = BTreeMap::new();
    for (&i, notes) in &reach {
        let mut zs = inst_zones(i);
        zs.retain(|z| {
            z.gen_value(GEN_SAMPLE_ID).is_none()
                || notes.iter().any(|&n| intersect(n, z.range()).is_some())
        });
        if zs.iter().any(|z| z.gen_value(GEN_SAMPLE_ID).is_some()) {
            kept_inst.insert(i, zs);
        }
    }

    // Presets, in the order asked for; instruments and samples renumbered as first met.
    let mut inst_map: BTreeMap<usize, usize> = BTreeMap::new();
    let mut presets = Vec::new();
    let mut instruments = Vec::new();
    for (i, w) in found {
        let mut zs = preset_zones(i);
        zs.retain(|z| match z.gen_value(GEN_INSTRUMENT) {
            None => true,
            Some(inst) => {
                kept_inst.contains_key(&(inst as usize))
                    && w.notes.iter().any(|&n| intersect(n, z.range()).is_some())
            }
        });
        for z in &mut zs {
            for g in &mut z.gens {
                if g.0 == GEN_INSTRUMENT {
                    let old = g.1 as usize;
                    let next = inst_map.len();
                    g.1 = *inst_map.entry(old).or_insert_with(|| {
                        instruments.push((inst[old].to_vec(), kept_inst[&old].clone()));
                        next
                    }) as u16;
                }
            }
        }
        presets.push((phdr[i].to_vec(), zs));
    }

    let pairs = stereo_pairs(&shdr);
    let mut sample_map: BTreeMap<usize, usize> = BTreeMap::new();
    let mut sample_order: Vec<usize> = Vec::new();
    for (_, zs) in &mut instruments {
        for z in zs {
            let rate = z
                .gen_value(GEN_SAMPLE_ID)
                .map(|s| u32_at(shdr[s as usize], 36))
                .unwrap_or(TARGET_RATE);
            for g in &mut z.gens {
                if g.0 == GEN_SAMPLE_ID {
                    let mut old = g.1 as usize;
                    // Both halves of a stereo pair play their mean (see `stereo_pairs`).
                    if let Some(&left) = pairs.get(&old) {
                        old = left;
                    }
                    let next = sample_map.len();
                    g.1 = *sample_map.entry(old).or_insert_with(|| {
                        sample_order.push(old);
                        next
                    }) as u16;
                } else if OFFSET_GENS.contains(&g.0) && rate > TARGET_RATE {
                    // Offsets count sample points, which the resampling shortens.
                    let v = g.1 as i16 as f64 * TARGET_RATE as f64 / rate as f64;
                    g.1 = v.round() as i16 as u16;
                }
            }
        }
    }

    // Samples: resampled where above the target rate, each followed by the guard zeros.
    let mut data: Vec<i16> = Vec::new();
    let mut headers: Vec<u8> = Vec::new();
    for &old in &sample_order {
        let h = shdr[old];
        let (start, end) = (u32_at(h, 20) as usize, u32_at(h, 24) as usize);
        let (loop_s, loop_e) = (u32_at(h, 28) as usize, u32_at(h, 32) as usize);
        let rate = u32_at(h, 36);
        let src_wave = wave
            .get(start..end)
            .ok_or_else(|| format!("sample {old} lies outside the sample data"))?;
        let mut x: Vec<f32> = src_wave.iter().map(|&s| s as f32 / 32768.0).collect();
        if let Some((&right, _)) = pairs.iter().find(|&(_, &l)| l == old) {
            let (r0, r1) = (
                u32_at(shdr[right], 20) as usize,
                u32_at(shdr[right], 24) as usize,
            );
            let r = wave
                .get(r0..r1)
                .ok_or("a stereo partner lies outside the sample data")?;
            for (v, &w) in x.iter_mut().zip(r) {
                *v = (*v + w as f32 / 32768.0) / 2.0;
            }
        }
        let pcm_of = |y: &[f32]| -> Vec<i16> {
            y.iter()
                .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
                .collect()
        };
        let (pcm, new_rate) = if rate > TARGET_RATE {
            (
                pcm_of(&instrec::audio::resample(&x, rate, TARGET_RATE)),
                TARGET_RATE,
            )
        } else {
            (pcm_of(&x), rate)
        };
        let scale = |p: usize| -> usize {
            let rel = p.saturating_sub(start) as f64 * new_rate as f64 / rate as f64;
            (rel.round() as usize).min(pcm.len())
        };
        let base = data.len();
        let mut rec = h.to_vec();
        rec[20..24].copy_from_slice(&(base as u32).to_le_bytes());
        rec[24..28].copy_from_slice(&((base + pcm.len()) as u32).to_le_bytes());
        rec[28..32].copy_from_slice(&((base + scale(loop_s)) as u32).to_le_bytes());
        rec[32..36].copy_from_slice(&((base + scale(loop_e)) as u32).to_le_bytes());
        rec[36..40].copy_from_slice(&new_rate.to_le_bytes());
        // Every kept sample is mono now (see `stereo_pairs`).
        rec[42..44].copy_from_slice(&0u16.to_le_bytes());
        rec[44..46].copy_from_slice(&SAMPLE_MONO.to_le_bytes());
        headers.extend(rec);
        data.extend(pcm);
        data.extend(std::iter::repeat_n(0i16, GUARD));
    }
    headers.extend(shdr[shdr.len() - 1]);

    let (p_hdr, p_bag, p_mod, p_gen) = write_zones(&presets, phdr[phdr.len() - 1], 24);
    let (i_hdr, i_bag, i_mod, i_gen) = write_zones(&instruments, inst[inst.len() - 1], 20);

    let copyright = sub(&info, b"ICOP")
        .map(|b| {
            String::from_utf8_lossy(b)
                .trim_end_matches('\0')
                .to_string()
        })
        .unwrap_or_default();
    let info_out = riff_list(
        b"INFO",
        &[
            riff_chunk(b"ifil", &[2, 0, 1, 0]),
            info_string(b"isng", "EMU8000"),
            info_string(b"INAM", "instrec GM subset of FluidR3_GM"),
            info_string(b"ICOP", &copyright),
            info_string(
                b"ICMT",
                "The presets instrec synth plays, cut from FluidR3_GM (MIT licence) by \
                 tools/cut_soundfont.rs; samples above 22050 Hz resampled to 22050 Hz.",
            ),
            info_string(b"ISFT", "instrec cut-soundfont"),
        ],
    );
    let smpl_bytes: Vec<u8> = data.iter().flat_map(|s| s.to_le_bytes()).collect();
    let sdta_out = riff_list(b"sdta", &[riff_chunk(b"smpl", &smpl_bytes)]);
    let pdta_out = riff_list(
        b"pdta",
        &[
            riff_chunk(b"phdr", &p_hdr),
            riff_chunk(b"pbag", &p_bag),
            riff_chunk(b"pmod", &p_mod),
            riff_chunk(b"pgen", &p_gen),
            riff_chunk(b"inst", &i_hdr),
            riff_chunk(b"ibag", &i_bag),
            riff_chunk(b"imod", &i_mod),
            riff_chunk(b"igen", &i_gen),
            riff_chunk(b"shdr", &headers),
        ],
    );
    let mut body = b"sfbk".to_vec();
    body.extend(info_out);
    body.extend(sdta_out);
    body.extend(pdta_out);
    eprintln!(
        "{} presets, {} instruments, {} samples, {:.1} MB of sample data",
        presets.len(),
        instruments.len(),
        sample_order.len(),
        smpl_bytes.len() as f64 / 1e6
    );
    Ok(riff_chunk(b"RIFF", &body))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        eprintln!("usage: cut-soundfont FluidR3_GM.sf2 OUT.sf2.z");
        std::process::exit(2);
    };
    let run = || -> Res<()> {
        let bytes = std::fs::read(src).map_err(|e| format!("{src}: {e}"))?;
        let out = cut(&bytes, &presets_used()).map_err(|e| format!("{src}: {e}"))?;
        let packed = soundfont::pack(&out)?;
        // The result must unpack to the same bytes and load where it will be used.
        if soundfont::unpack(&packed)? != out {
            return Err("packing is not lossless".into());
        }
        rustysynth::SoundFont::new(&mut &out[..])
            .map_err(|e| format!("the cut SoundFont does not load ({e:?})"))?;
        instrec::util::write_atomic(Path::new(dst), &packed).map_err(|e| format!("{dst}: {e}"))?;
        eprintln!(
            "{dst}: {} bytes packed ({} bytes as a plain .sf2)",
            packed.len(),
            out.len()
        );
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
