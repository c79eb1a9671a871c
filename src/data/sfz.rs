//! SFZ instruments read into the regions a static sample player plays: the opcodes that shape a
//! note (sample, key and velocity ranges, root key, tuning, volume, pan, offsets, loops, the
//! amplitude envelope) and the conditions that pick regions (triggers, round robins, random
//! slots, CC ranges and crossfades at the file's default CC values, keyswitches at their
//! default). Opcodes of real-time control (LFOs, filters, modulation by CCs, labels, polyphony)
//! are known and skipped; any other opcode is an error naming file, line and opcode, so a library
//! is never rendered wrong in silence. [`super::sf2`] turns the regions into a SoundFont.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::error::FileError;

/// Largest SFZ text read (with its includes), and how deep includes nest.
const MAX_TEXT: usize = 16 << 20;
const MAX_INCLUDE_DEPTH: usize = 16;

/// How a region's sample loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopMode {
    /// Plays to its end (also `one_shot`, whose note-off the static player cannot ignore).
    None,
    /// Loops from `loop_start` to `loop_end` while the note sounds.
    Continuous,
    /// Loops until the note is released, then plays on to the end.
    Sustain,
}

/// One region as played: everything a SoundFont zone needs.
#[derive(Debug, Clone)]
pub struct Region {
    /// The sample file (for samples held inside an instrument file, that file and `#index`).
    pub sample: PathBuf,
    /// The sample itself, where it was read with the instrument (GUS patches) rather than from
    /// its own file.
    pub audio: Option<std::sync::Arc<crate::audio::Audio>>,
    pub keys: (u8, u8),
    pub velocities: (u8, u8),
    pub root_key: u8,
    /// Tuning in cents (`tune` plus 100 × `transpose`).
    pub tune_cents: i32,
    /// Cents per key (`pitch_keytrack`).
    pub keytrack: i32,
    /// Gain in dB (`volume`, `group_volume`, `amplitude`, crossfades at default CCs).
    pub gain_db: f64,
    /// -100 (left) .. 100 (right).
    pub pan: f64,
    /// Sample frames skipped at the start; the last frame played (exclusive), if set.
    pub offset: u64,
    pub end: Option<u64>,
    pub loop_mode: LoopMode,
    pub loop_points: Option<(u64, u64)>,
    /// Amplitude envelope: delay, attack, hold, decay (s), sustain (%), release (s).
    pub envelope: [f64; 6],
}

/// An SFZ instrument: the regions played at default controls.
#[derive(Debug, Clone)]
pub struct Instrument {
    pub path: PathBuf,
    /// Every file read for the instrument besides its samples (the SFZ text and its includes).
    pub texts: Vec<PathBuf>,
    pub regions: Vec<Region>,
}

impl Instrument {
    /// The lowest and highest key any region plays.
    pub fn key_span(&self) -> Option<(u8, u8)> {
        let lo = self.regions.iter().map(|r| r.keys.0).min()?;
        let hi = self.regions.iter().map(|r| r.keys.1).max()?;
        Some((lo, hi))
    }
}

/// Opcodes read (exact names; `N` stands for a CC number).
const READ: &[&str] = &[
    "sample",
    "lokey",
    "hikey",
    "key",
    "pitch_keycenter",
    "lovel",
    "hivel",
    "tune",
    "pitch",
    "transpose",
    "pitch_keytrack",
    "volume",
    "group_volume",
    "master_volume",
    "global_volume",
    "amplitude",
    "pan",
    "offset",
    "end",
    "loop_mode",
    "loopmode",
    "loop_start",
    "loopstart",
    "loop_end",
    "loopend",
    "ampeg_delay",
    "ampeg_attack",
    "ampeg_hold",
    "ampeg_decay",
    "ampeg_sustain",
    "ampeg_release",
    "trigger",
    "seq_position",
    "seq_length",
    "lorand",
    "hirand",
    "sw_last",
    "sw_lokey",
    "sw_hikey",
    "sw_default",
    "default_path",
    "note_offset",
    "octave_offset",
    "direction",
];

/// Opcodes with a CC number read: region conditions and crossfades, default CC values.
const READ_CC: &[&str] = &[
    "locc",
    "hicc",
    "lohdcc",
    "hihdcc",
    "xfin_locc",
    "xfin_hicc",
    "xfout_locc",
    "xfout_hicc",
    "set_cc",
    "set_hdcc",
];

/// Opcodes skipped: real-time control a static render plays at rest (LFOs, envelopes other
/// than amplitude, filters and EQ, modulation by CCs and curves), labels, voice management and
/// velocity shaping that the SoundFont's own velocity curve stands in for.
const SKIPPED: &[&str] = &[
    "group",
    "off_by",
    "off_mode",
    "off_time",
    "off_shape",
    "polyphony",
    "note_polyphony",
    "sustain_cc",
    "sustain_sw",
    "sostenuto_sw",
    "sostenuto_cc",
    "ampeg_dynamic",
    "amp_veltrack",
    "amp_keytrack",
    "amp_keycenter",
    "amp_random",
    "rt_decay",
    "group_label",
    "master_label",
    "global_label",
    "region_label",
    "sw_label",
    "curve_index",
    "bend_up",
    "bend_down",
    "bend_step",
    "bend_smooth",
    "offset_random",
    "delay",
    "delay_random",
    "pitch_random",
    "cutoff",
    "resonance",
    "fil_type",
    "fil_keytrack",
    "fil_keycenter",
    "fil_veltrack",
    "xfin_lovel",
    "xfin_hivel",
    "xfout_lovel",
    "xfout_hivel",
    "xfin_lokey",
    "xfin_hikey",
    "xfout_lokey",
    "xfout_hikey",
    "xf_velcurve",
    "xf_keycurve",
    "xf_cccurve",
    "width",
    "position",
    "output",
    "effect1",
    "effect2",
    "image",
    "hint_ram_based",
    "sw_vel",
];

/// Skipped by family: any opcode with one of these prefixes or containing one of these parts.
const SKIPPED_PREFIXES: &[&str] = &[
    "lfo",
    "pitchlfo_",
    "amplfo_",
    "pitcheg_",
    "fileg_",
    "fil",
    "eq",
    "var",
    "label_cc",
    "amp_velcurve_",
    "cutoff",
    "resonance",
    "ampeg_attack_",
    "ampeg_hold_",
    "ampeg_decay_",
    "ampeg_sustain_",
    "ampeg_release_",
    "ampeg_delay_",
    "amplitude_",
    "pan_",
    "volume_",
    "tune_",
    "pitch_",
    "offset_",
    "delay_",
    "amp_veltrack_",
    "hint_",
    "v",
];
const SKIPPED_PARTS: &[&str] = &["_oncc", "_curvecc", "_smoothcc", "_stepcc"];

/// Whether an opcode is skipped by name or family.
fn skipped(name: &str) -> bool {
    SKIPPED.contains(&name)
        || SKIPPED_PREFIXES
            .iter()
            .any(|p| name.starts_with(p) && known_family(name, p))
        || SKIPPED_PARTS.iter().any(|p| name.contains(p))
        || cc_modulation(name)
}

/// A modulation by a CC in the older spelling (`amplitude_cc7`, `ampeg_releasecc64`).
fn cc_modulation(name: &str) -> bool {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    stem.len() < name.len() && stem.ends_with("cc") && cc_opcode(name).is_none()
}

/// `v` stands only for curve points (`v000`..`v127`); the other prefixes name families.
fn known_family(name: &str, prefix: &str) -> bool {
    prefix != "v" || (name.len() == 4 && name[1..].bytes().all(|b| b.is_ascii_digit()))
}

/// A CC-numbered opcode (`locc64`) as its stem and number.
fn cc_opcode(name: &str) -> Option<(&'static str, u8)> {
    READ_CC.iter().find_map(|stem| {
        let n = name.strip_prefix(stem)?;
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse::<u8>().ok().filter(|&n| n < 128))
            .flatten()
            .map(|n| (*stem, n))
    })
}

/// An opcode with where it was written.
#[derive(Debug, Clone)]
struct Opcode {
    name: String,
    value: String,
    at: String,
}

impl Opcode {
    /// The value as a finite number, else an error naming file, line and opcode.
    fn number(&self) -> Result<f64, FileError> {
        self.value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                FileError::new(
                    &self.at,
                    format!("{}={} is not a number", self.name, self.value),
                )
            })
    }
}

/// Headers in the order that scopes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Header {
    Control,
    Global,
    Master,
    Group,
    Region,
    /// `<curve>`, `<effect>`, `<midi>`, `<sample>`: nothing a static render plays.
    Other,
}

impl Header {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "control" => Self::Control,
            "global" => Self::Global,
            "master" => Self::Master,
            "group" => Self::Group,
            "region" => Self::Region,
            "curve" | "effect" | "midi" | "sample" => Self::Other,
            _ => return None,
        })
    }
}

/// A token of SFZ text.
#[derive(Debug)]
enum Token {
    Header(Header),
    Opcode(Opcode),
}

/// Reads `path` with its `#include`s and `#define`s resolved into tokens.
fn tokens(path: &Path) -> Result<(Vec<Token>, Vec<PathBuf>), FileError> {
    let mut out = Vec::new();
    let mut defines: Vec<(String, String)> = Vec::new();
    let mut read = Vec::new();
    let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut total = 0;
    read_into(
        path,
        &root,
        0,
        &mut defines,
        &mut read,
        &mut total,
        &mut out,
    )?;
    Ok((out, read))
}

fn read_into(
    path: &Path,
    root: &Path,
    depth: usize,
    defines: &mut Vec<(String, String)>,
    read: &mut Vec<PathBuf>,
    total: &mut usize,
    out: &mut Vec<Token>,
) -> Result<(), FileError> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(FileError::at(
            path,
            format!("includes nest deeper than {MAX_INCLUDE_DEPTH} (an include loop?)"),
        ));
    }
    let size = std::fs::metadata(path)
        .map_err(|e| FileError::at(path, e))?
        .len() as usize;
    *total += size;
    if *total > MAX_TEXT {
        return Err(FileError::at(
            path,
            format!("SFZ text over {} MiB with its includes", MAX_TEXT >> 20),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| FileError::at(path, e))?;
    if !read.iter().any(|p| p == path) {
        read.push(path.to_path_buf());
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = strip_comments(&text);
    for (n, raw) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), n + 1);
        // Directives may stand anywhere in a line (`#define $K 21 lokey=$K`, two includes on
        // one line), as sfizz reads them: the text between them is opcodes.
        let mut rest = raw.trim();
        while !rest.is_empty() {
            let Some(i) = next_directive(rest) else {
                tokenize_line(&expand(rest, defines), &at, out)?;
                break;
            };
            let before = rest[..i].trim();
            if !before.is_empty() {
                tokenize_line(&expand(before, defines), &at, out)?;
            }
            let directive = &rest[i..];
            if let Some(after) = directive.strip_prefix("#define") {
                let (name, after) = next_word(after);
                let (value, after) = next_word(after);
                if value.is_empty() {
                    return Err(FileError::new(at, "#define needs a $NAME and a value"));
                }
                if !name.starts_with('$') {
                    return Err(FileError::new(
                        at,
                        format!("#define name '{name}' lacks its $"),
                    ));
                }
                defines.retain(|(k, _)| k != name);
                defines.push((name.to_string(), value.to_string()));
                // Longest first, so $DYN2 is not read as $DYN followed by 2.
                defines.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
                rest = after.trim_start();
            } else {
                let after = directive["#include".len()..].trim_start();
                let (name, tail) = match after.strip_prefix('"') {
                    Some(q) => match q.find('"') {
                        Some(j) => (&q[..j], &q[j + 1..]),
                        None => (q, ""),
                    },
                    None => next_word(after),
                };
                let name = expand(name.trim(), defines);
                if name.is_empty() {
                    return Err(FileError::new(at, "#include needs a file name"));
                }
                let inc = root.join(name.replace('\\', "/"));
                if !inc.is_file() {
                    return Err(FileError::new(
                        at,
                        format!("included file {} is missing", inc.display()),
                    ));
                }
                read_into(&inc, root, depth + 1, defines, read, total, out)?;
                rest = tail.trim_start();
            }
        }
    }
    Ok(())
}

/// The first whitespace-delimited word of `s` and what follows it.
fn next_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_at(s.find(char::is_whitespace).unwrap_or(s.len()))
}

/// Where the next `#define` or `#include` starts in a line.
fn next_directive(line: &str) -> Option<usize> {
    ["#define", "#include"]
        .iter()
        .filter_map(|d| line.find(d))
        .min()
}

/// Removes `// line` and `/* block */` comments, whichever opens first, keeping line breaks so
/// that errors name the right line.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('/') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("//") {
            rest = tail.find('\n').map_or("", |j| &tail[j..]);
        } else if let Some(body) = tail.strip_prefix("/*") {
            let j = body.find("*/").unwrap_or(body.len());
            out.extend(std::iter::repeat_n('\n', body[..j].matches('\n').count()));
            rest = body.get(j + 2..).unwrap_or("");
        } else {
            out.push('/');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn expand(line: &str, defines: &[(String, String)]) -> String {
    let mut s = line.to_string();
    if s.contains('$') {
        for (k, v) in defines {
            s = s.replace(k.as_str(), v);
        }
    }
    s
}

/// Splits a line into headers and `name=value` opcodes. A value runs to the next opcode or
/// header (sample names may hold spaces).
fn tokenize_line(line: &str, at: &str, out: &mut Vec<Token>) -> Result<(), FileError> {
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(h) = rest.strip_prefix('<') {
            let Some(close) = h.find('>') else {
                return Err(FileError::new(at, format!("unclosed header '{rest}'")));
            };
            let name = &h[..close];
            let header = Header::parse(name)
                .ok_or_else(|| FileError::new(at, format!("unknown SFZ header <{name}>")))?;
            out.push(Token::Header(header));
            rest = h[close + 1..].trim_start();
            continue;
        }
        let Some(eq) = rest.find('=') else {
            return Err(FileError::new(
                at,
                format!("'{rest}' is neither a header nor an opcode (name=value)"),
            ));
        };
        let name = rest[..eq].trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(FileError::new(
                at,
                format!("'{name}' is not an opcode name"),
            ));
        }
        let after = &rest[eq + 1..];
        let end = value_end(after);
        out.push(Token::Opcode(Opcode {
            name: name.to_string(),
            value: after[..end].trim().to_string(),
            at: at.to_string(),
        }));
        rest = after[end..].trim_start();
    }
    Ok(())
}

/// Where a value ends: before the whitespace that precedes the next `name=` or `<header>`.
fn value_end(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            let j = i + s[i..].len() - s[i..].trim_start().len();
            let next = &s[j..];
            let word = next
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            if next.starts_with('<') || (word > 0 && next[word..].starts_with('=')) {
                return i;
            }
            i = j.max(i + 1);
        } else if b[i] == b'<' && i > 0 {
            return i;
        } else {
            i += 1;
        }
    }
    b.len()
}

/// A MIDI key: a number, or a note name with middle C = `c4` = 60.
fn parse_key(v: &str) -> Option<i32> {
    if let Ok(n) = v.parse::<i32>() {
        return Some(n);
    }
    let v = v.to_ascii_lowercase();
    let mut chars = v.chars();
    let base = match chars.next()? {
        'c' => 0,
        'd' => 2,
        'e' => 4,
        'f' => 5,
        'g' => 7,
        'a' => 9,
        'b' => 11,
        _ => return None,
    };
    let rest: String = chars.collect();
    let (shift, octave) = if let Some(o) = rest.strip_prefix('#') {
        (1, o)
    } else if let Some(o) = rest.strip_prefix('b').filter(|o| !o.is_empty()) {
        (-1, o)
    } else {
        (0, rest.as_str())
    };
    Some((octave.parse::<i32>().ok()? + 1) * 12 + base + shift)
}

/// The opcodes in force for one region, with the control values of the file.
struct Scope<'a> {
    ops: BTreeMap<&'a str, &'a Opcode>,
}

impl Scope<'_> {
    fn text(&self, name: &str) -> Option<&str> {
        self.ops.get(name).map(|o| o.value.as_str())
    }

    fn num(&self, name: &str) -> Result<Option<f64>, FileError> {
        self.ops.get(name).map(|o| o.number()).transpose()
    }

    fn key(&self, name: &str) -> Result<Option<i32>, FileError> {
        self.ops
            .get(name)
            .map(|o| {
                parse_key(&o.value).ok_or_else(|| {
                    FileError::new(&o.at, format!("{name}={} is not a MIDI key", o.value))
                })
            })
            .transpose()
    }

    /// `name`'s value (or `default`) plus its modulations by CCs (`name_onccN`, `nameccN`) at
    /// the file's default CC values, taken as linear.
    fn at_rest(&self, name: &str, default: f64, cc: &[f64; 128]) -> Result<f64, FileError> {
        let mut v = self.num(name)?.unwrap_or(default);
        for (k, o) in self.ops.range(name..) {
            let Some(rest) = k.strip_prefix(name) else {
                break;
            };
            let Some(n) = rest
                .strip_prefix("_oncc")
                .or_else(|| rest.strip_prefix("cc"))
            else {
                continue;
            };
            let Ok(n) = n.parse::<usize>() else {
                continue;
            };
            let depth = o.number()?;
            v += depth * cc.get(n).copied().unwrap_or(0.0) / 127.0;
        }
        Ok(v)
    }

    fn at(&self) -> String {
        self.ops
            .get("sample")
            .or_else(|| self.ops.values().next())
            .map_or_else(String::new, |o| o.at.clone())
    }
}

/// Ends a region's scope: the opcodes of its layers, later ones overriding earlier ones.
fn close_region<'a>(layers: &[Vec<&'a Opcode>; 4], header: Header, scopes: &mut Vec<Scope<'a>>) {
    if header == Header::Region {
        let mut ops = BTreeMap::new();
        for o in layers.iter().flatten() {
            ops.insert(o.name.as_str(), *o);
        }
        scopes.push(Scope { ops });
    }
}

/// Reads an SFZ instrument: every region a note-on plays with the file's default controls.
pub fn read(path: &Path) -> Result<Instrument, FileError> {
    let (toks, texts) = tokens(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    // Control opcodes and every opcode's check, in one pass.
    let mut control: HashMap<String, String> = HashMap::new();
    let mut cc = [0f64; 128];
    let mut sw_default: Option<i32> = None;
    let mut header = Header::Global;
    for t in &toks {
        match t {
            Token::Header(h) => header = *h,
            Token::Opcode(o) if header != Header::Other => {
                if let Some((stem, n)) = cc_opcode(&o.name) {
                    if stem == "set_cc" || stem == "set_hdcc" {
                        let v = o.number()?;
                        cc[n as usize] = if stem == "set_hdcc" { v * 127.0 } else { v };
                    }
                } else if READ.contains(&o.name.as_str()) {
                    if o.name == "sw_default" {
                        sw_default = Some(parse_key(&o.value).ok_or_else(|| {
                            FileError::new(&o.at, format!("sw_default={} is not a key", o.value))
                        })?);
                    }
                    if header == Header::Control {
                        control.insert(o.name.clone(), o.value.clone());
                    }
                } else if !skipped(&o.name) {
                    return Err(FileError::new(
                        &o.at,
                        format!("unknown SFZ opcode '{}'", o.name),
                    ));
                }
            }
            Token::Opcode(_) => {}
        }
    }
    let default_path = control
        .get("default_path")
        .map(|p| p.replace('\\', "/"))
        .unwrap_or_default();
    let key_shift = control
        .get("note_offset")
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
        + 12 * control
            .get("octave_offset")
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0);

    // The scopes: each region sees global < master < group < region.
    let mut layers: [Vec<&Opcode>; 4] = Default::default();
    let mut scopes: Vec<Scope> = Vec::new();
    let mut header = Header::Global;
    for t in &toks {
        match t {
            Token::Header(h) => {
                close_region(&layers, header, &mut scopes);
                let level = match h {
                    Header::Global | Header::Control | Header::Other => 0,
                    Header::Master => 1,
                    Header::Group => 2,
                    Header::Region => 3,
                };
                if *h != Header::Control && *h != Header::Other {
                    for l in layers.iter_mut().skip(level) {
                        l.clear();
                    }
                }
                header = *h;
            }
            Token::Opcode(o) => {
                let level = match header {
                    Header::Global => 0,
                    Header::Master => 1,
                    Header::Group => 2,
                    Header::Region => 3,
                    Header::Control | Header::Other => continue,
                };
                layers[level].push(o);
            }
        }
    }
    close_region(&layers, header, &mut scopes);

    // The keyswitch played: sw_default, else the lowest one used.
    let active_switch = sw_default.or_else(|| {
        scopes
            .iter()
            .filter_map(|s| s.text("sw_last").and_then(parse_key))
            .min()
    });
    let mut regions = Vec::new();
    for s in &scopes {
        if let Some(r) = region(s, &cc, active_switch, base, &default_path, key_shift)? {
            regions.push(r);
        }
    }
    if regions.is_empty() {
        return Err(FileError::at(
            path,
            "no region plays at the default controls (no <region> with a sample?)",
        ));
    }
    Ok(Instrument {
        path: path.to_path_buf(),
        texts,
        regions,
    })
}

/// The region a scope plays, or `None` where it does not sound on a plain note-on.
fn region(
    s: &Scope,
    cc: &[f64; 128],
    active_switch: Option<i32>,
    base: &Path,
    default_path: &str,
    key_shift: i32,
) -> Result<Option<Region>, FileError> {
    let Some(sample) = s.text("sample") else {
        return Ok(None);
    };
    let trigger = s.text("trigger").unwrap_or("attack");
    if !matches!(trigger, "attack" | "first") {
        return Ok(None); // release, release_key, legato: not a plain note-on
    }
    if s.num("seq_position")?.unwrap_or(1.0) != 1.0 || s.num("lorand")?.unwrap_or(0.0) > 0.0 {
        return Ok(None); // one round robin, one random slot
    }
    if let (Some(sw), Some(active)) = (s.text("sw_last").and_then(parse_key), active_switch)
        && sw != active
    {
        return Ok(None);
    }
    let mut gain_db = 0.0;
    let mut fades = std::collections::BTreeSet::new();
    for (name, o) in &s.ops {
        let Some((stem, n)) = cc_opcode(name) else {
            continue;
        };
        let v = cc[n as usize];
        let x = o.number()?;
        let inside = match stem {
            "locc" => v >= x,
            "hicc" => v <= x,
            "lohdcc" => v >= x * 127.0,
            "hihdcc" => v <= x * 127.0,
            "xfin_locc" | "xfin_hicc" => {
                fades.insert((true, n));
                true
            }
            "xfout_locc" | "xfout_hicc" => {
                fades.insert((false, n));
                true
            }
            _ => true,
        };
        if !inside {
            return Ok(None);
        }
    }
    // Crossfades at the default CC values: in rises from lo to hi, out falls from lo to hi.
    for (rising, n) in fades {
        let v = cc[n as usize];
        let dir = if rising { "xfin" } else { "xfout" };
        let get = |k: &str, d: f64| -> Result<f64, FileError> {
            Ok(s.num(&format!("{dir}_{k}cc{n}"))?.unwrap_or(d))
        };
        let (lo, hi) = (
            get("lo", 0.0)?,
            get("hi", if rising { 0.0 } else { 127.0 })?,
        );
        let t = if hi > lo {
            ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
        } else {
            f64::from(u8::from(v >= hi))
        };
        let g = if rising { t } else { 1.0 - t };
        if g <= 0.0 {
            return Ok(None);
        }
        gain_db += 20.0 * g.log10();
    }
    if sample.starts_with('*') {
        return Ok(None); // *silence, *noise, *sine: oscillators, not recordings
    }
    if let Some(d) = s.text("direction").filter(|d| *d != "forward") {
        return Err(FileError::new(
            s.at(),
            format!("direction={d} is not supported"),
        ));
    }
    let file = base.join(format!("{default_path}{}", sample.replace('\\', "/")));
    if !file.is_file() {
        return Err(FileError::new(
            s.at(),
            format!("sample file {} is missing", file.display()),
        ));
    }
    let key = s.key("key")?;
    let lokey = s.key("lokey")?.or(key).unwrap_or(0) + key_shift;
    let hikey = s.key("hikey")?.or(key).unwrap_or(127) + key_shift;
    let root = s.key("pitch_keycenter")?.or(key).unwrap_or(60) + key_shift;
    let lovel = s.num("lovel")?.unwrap_or(1.0);
    let hivel = s.num("hivel")?.unwrap_or(127.0);
    let (lokey, hikey) = (lokey.clamp(0, 127), hikey.clamp(0, 127));
    if lokey > hikey || lovel > hivel {
        return Ok(None);
    }
    for name in ["volume", "group_volume", "master_volume", "global_volume"] {
        gain_db += s.at_rest(name, 0.0, cc)?;
    }
    if s.ops.keys().any(|k| k.starts_with("amplitude")) {
        let a = s.at_rest("amplitude", 100.0, cc)?;
        if a <= 0.0 {
            return Ok(None);
        }
        gain_db += 20.0 * (a / 100.0).log10();
    }
    let tune_cents = s.at_rest("tune", s.num("pitch")?.unwrap_or(0.0), cc)?
        + 100.0 * s.num("transpose")?.unwrap_or(0.0);
    let loop_mode = match s.text("loop_mode").or(s.text("loopmode")) {
        None | Some("no_loop") | Some("one_shot") => LoopMode::None,
        Some("loop_continuous") => LoopMode::Continuous,
        Some("loop_sustain") => LoopMode::Sustain,
        Some(other) => {
            return Err(FileError::new(
                s.at(),
                format!("loop_mode={other} is not an SFZ loop mode"),
            ));
        }
    };
    let frames = |name: &str, alias: &str| -> Result<Option<u64>, FileError> {
        Ok(s.num(name)?.or(s.num(alias)?).map(|v| v.max(0.0) as u64))
    };
    let loop_points = match (
        frames("loop_start", "loopstart")?,
        frames("loop_end", "loopend")?,
    ) {
        (Some(a), Some(b)) if b > a => Some((a, b)),
        _ => None,
    };
    let env = |name: &str, default: f64| -> Result<f64, FileError> {
        Ok(s.at_rest(name, default, cc)?.max(0.0))
    };
    Ok(Some(Region {
        sample: file,
        audio: None,
        keys: (lokey as u8, hikey as u8),
        velocities: (lovel.clamp(1.0, 127.0) as u8, hivel.clamp(1.0, 127.0) as u8),
        root_key: root.clamp(0, 127) as u8,
        tune_cents: tune_cents.round() as i32,
        keytrack: s.num("pitch_keytrack")?.unwrap_or(100.0).round() as i32,
        gain_db,
        pan: s.at_rest("pan", 0.0, cc)?.clamp(-100.0, 100.0),
        offset: frames("offset", "offset")?.unwrap_or(0),
        end: frames("end", "end")?,
        loop_mode: if loop_points.is_some() {
            loop_mode
        } else {
            LoopMode::None
        },
        loop_points,
        envelope: [
            env("ampeg_delay", 0.0)?,
            env("ampeg_attack", 0.0)?,
            env("ampeg_hold", 0.0)?,
            env("ampeg_decay", 0.0)?,
            s.at_rest("ampeg_sustain", 100.0, cc)?.clamp(0.0, 100.0),
            env("ampeg_release", 0.001)?,
        ],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("instrec-sfz-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("s")).unwrap();
        std::fs::write(d.join("s/a.wav"), b"").unwrap();
        std::fs::write(d.join("s/b c.wav"), b"").unwrap();
        d
    }

    #[test]
    fn note_names_and_values_with_spaces() {
        assert_eq!(parse_key("c4"), Some(60));
        assert_eq!(parse_key("C#4"), Some(61));
        assert_eq!(parse_key("eb3"), Some(51));
        assert_eq!(parse_key("b-1"), Some(11));
        assert_eq!(parse_key("h4"), None);
        let mut out = Vec::new();
        tokenize_line("<region> sample=b c.wav lokey=c4 hikey=62", "x:1", &mut out).unwrap();
        let ops: Vec<(String, String)> = out
            .iter()
            .filter_map(|t| match t {
                Token::Opcode(o) => Some((o.name.clone(), o.value.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            ops,
            [("sample", "b c.wav"), ("lokey", "c4"), ("hikey", "62")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn scopes_conditions_and_defines() {
        let d = tmp("scopes");
        write(&d, "inc.sfz", "<region> sample=a.wav key=$K\n");
        let p = write(
            &d,
            "i.sfz",
            "<control> default_path=s/ set_cc64=0 label_cc7=Vol\n\
             #define $K 62\n\
             //*** a line comment with a block opener\n\
             <global> volume=-6 lfo01_freq=3 /* a\ncomment */\n\
             <group> lovel=1 hivel=64 tune=10 // soft\n\
             <region> sample=a.wav lokey=40 hikey=50 pitch_keycenter=45\n\
             <region> sample=b c.wav key=52 trigger=release\n\
             <region> sample=a.wav key=53 seq_position=2\n\
             <region> sample=a.wav key=54 locc64=64\n\
             <group>\n#include \"inc.sfz\"\n\
             <group> sw_last=24 <region> sample=a.wav key=55\n\
             <group> sw_last=25 <region> sample=a.wav key=56\n",
        );
        let inst = read(&p).unwrap();
        let keys: Vec<(u8, u8)> = inst.regions.iter().map(|r| r.keys).collect();
        assert_eq!(keys, [(40, 50), (62, 62), (55, 55)]);
        let r = &inst.regions[0];
        assert_eq!((r.root_key, r.velocities, r.tune_cents), (45, (1, 64), 10));
        assert_eq!(r.gain_db, -6.0);
        assert_eq!(inst.regions[1].root_key, 62);
        assert_eq!(inst.regions[1].velocities, (1, 127));
        assert_eq!(inst.key_span(), Some((40, 62)));
    }

    #[test]
    fn directives_inside_lines() {
        let d = tmp("directives");
        write(&d, "a.txt", "<region> sample=a.wav key=$K1\n");
        write(&d, "b.txt", "<region> sample=a.wav key=$K\n");
        let p = write(
            &d,
            "i.sfz",
            "<control> default_path=s/\n\
             #define $K1 61 #define $K 70 <group> sostenuto_sw=off\n\
             #include \"a.txt\" #include \"b.txt\"\n\
             #define $K 72 <region> sample=a.wav key=$K\n",
        );
        let keys: Vec<(u8, u8)> = read(&p).unwrap().regions.iter().map(|r| r.keys).collect();
        assert_eq!(keys, [(61, 61), (70, 70), (72, 72)]);
    }

    #[test]
    fn bad_libraries_are_named() {
        let d = tmp("bad");
        let err = |text: &str| read(&write(&d, "x.sfz", text)).unwrap_err().to_string();
        let e = err("<region> sample=s/a.wav\n<region> sample=s/a.wav wobble=3\n");
        assert!(
            e.contains("x.sfz:2") && e.contains("unknown SFZ opcode 'wobble'"),
            "{e}"
        );
        let e = err("<region> sample=s/missing.wav\n");
        assert!(e.contains("sample file") && e.contains("missing"), "{e}");
        let e = err("<regoin> sample=s/a.wav\n");
        assert!(e.contains("unknown SFZ header <regoin>"), "{e}");
        let e = err("<region> sample=s/a.wav lokey=zz\n");
        assert!(e.contains("lokey=zz is not a MIDI key"), "{e}");
        let e = err("<group> volume=-3\n");
        assert!(e.contains("no region plays"), "{e}");
        let e = err("#include \"x.sfz\"\n");
        assert!(e.contains("deeper than"), "{e}");
        let e = err("<region> sample=*sine\n");
        assert!(e.contains("no region plays"), "{e}");
        let e = err("<region> sample=s/a.wav direction=reverse\n");
        assert!(e.contains("not supported"), "{e}");
    }
}
