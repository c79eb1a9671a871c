//! A synthetic corpus in exactly the IRMAS layout and format (44.1 kHz, 16-bit stereo WAV),
//! rendered with rustysynth from a General-MIDI SoundFont, so that the whole pipeline can be run
//! and tested where the real IRMAS cannot be downloaded.
//!
//! - Training clips (3 s): the predominant instrument plays a melody in front, over softer chords
//!   and bass on other General-MIDI programs and, in some clips, drums (`[dru]`, else `[nod]`),
//!   in a random key, tempo and genre tag. Clips come in songs of 1–3 excerpts (`__1`, `__2`, ...)
//!   that share key, tempo, genre and accompaniment.
//! - Test clips (5–20 s): one to three predominant instruments, each with its own line, listed in
//!   the clip's `.txt` as the official files do (`code\t\n` per line).
//!
//! Every file is rendered from its own seed derived from the corpus seed: the same seed gives
//! byte-identical files, whatever the number of threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};

use super::augment::augment;
use super::irmas::{TEST_DIR_PREFIX, TRAIN_DIR};
use super::library::{FileHash, Library};
use super::perform;
use crate::CLASSES;
use crate::audio::write_wav_i16;
use crate::error::FileError;
use crate::util::{Rng, write_atomic};

const RATE: u32 = 44_100;

/// General-MIDI programs (0-based) of each class, in the order of [`CLASSES`].
pub const PROGRAMS: [&[u8]; 11] = [
    &[42],             // cel: cello
    &[71],             // cla: clarinet
    &[73],             // flu: flute
    &[24, 25],         // gac: nylon, steel guitar
    &[26, 27, 29, 30], // gel: jazz, clean, overdriven, distortion guitar
    &[16, 17, 19],     // org: drawbar, percussive, church organ
    &[0, 1],           // pia: grand, bright piano
    &[64, 65, 66],     // sax: soprano, alto, tenor
    &[56],             // tru: trumpet
    &[40],             // vio: violin
    &[52, 53, 54],     // voi: choir aahs, voice oohs, synth voice
];

/// A playable melodic range (MIDI keys) for each class.
const RANGES: [(u8, u8); 11] = [
    (36, 67),
    (52, 84),
    (60, 93),
    (40, 76),
    (40, 79),
    (48, 84),
    (48, 84),
    (50, 79),
    (55, 82),
    (55, 91),
    (50, 76),
];

/// Accompaniment (chords) and bass programs.
const CHORD_PROGRAMS: [u8; 6] = [4, 46, 89, 0, 16, 24];
const BASS_PROGRAMS: [u8; 4] = [32, 33, 34, 38];
/// Velocities (inclusive) of the melody, chord, bass and drum notes; keys of chords and bass.
const MELODY_VEL: (u8, u8) = (95, 120);
const CHORD_KEYS: (u8, u8) = (60, 71);
const CHORD_VEL: (u8, u8) = (40, 55);
const BASS_KEYS: (u8, u8) = (36, 47);
const BASS_VEL: (u8, u8) = (60, 75);
/// The drum kit (bank 128, preset 0, channel 9): key and velocities of hi-hat, kick and snare.
const DRUM_BANK: u16 = 128;
const HI_HAT: (u8, (u8, u8)) = (42, (45, 65));
const KICK: (u8, (u8, u8)) = (36, (70, 90));
const SNARE: (u8, (u8, u8)) = (38, (60, 80));

/// A random velocity in an inclusive range.
fn velocity(rng: &mut Rng, (lo, hi): (u8, u8)) -> i32 {
    rng.range(lo as usize, hi as usize + 1) as i32
}

/// Keys and velocities (both inclusive) a preset is played with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteRange {
    pub keys: (u8, u8),
    pub velocities: (u8, u8),
}

/// A preset the corpus plays: its bank, program and the notes it is played with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetUse {
    pub bank: u16,
    pub program: u16,
    pub notes: Vec<NoteRange>,
}

/// Every preset [`render_corpus`] can play and every note it can play on it, sorted by bank and
/// program: what an embedded SoundFont must hold.
pub fn presets_used() -> Vec<PresetUse> {
    let mut used: std::collections::BTreeMap<(u16, u16), Vec<NoteRange>> = Default::default();
    let mut add = |bank: u16, program: u8, keys: (u8, u8), velocities: (u8, u8)| {
        let notes = used.entry((bank, program as u16)).or_default();
        let n = NoteRange { keys, velocities };
        if !notes.contains(&n) {
            notes.push(n);
        }
    };
    for (class, programs) in PROGRAMS.iter().enumerate() {
        for &p in *programs {
            add(0, p, RANGES[class], MELODY_VEL);
        }
    }
    for p in CHORD_PROGRAMS {
        add(0, p, CHORD_KEYS, CHORD_VEL);
    }
    for p in BASS_PROGRAMS {
        add(0, p, BASS_KEYS, BASS_VEL);
    }
    for (key, vel) in [HI_HAT, KICK, SNARE] {
        add(DRUM_BANK, 0, (key, key), vel);
    }
    used.into_iter()
        .map(|((bank, program), notes)| PresetUse {
            bank,
            program,
            notes,
        })
        .collect()
}
/// The presets of `used` that `font` lacks, as (bank, program). rustysynth would play another
/// preset in their place without a word, so a corpus would carry wrong labels.
pub fn missing_presets(font: &SoundFont, used: &[PresetUse]) -> Vec<(u16, u16)> {
    let have: std::collections::HashSet<(i32, i32)> = font
        .get_presets()
        .iter()
        .map(|p| (p.get_bank_number(), p.get_patch_number()))
        .collect();
    used.iter()
        .map(|u| (u.bank, u.program))
        .filter(|&(b, p)| !have.contains(&(b as i32, p as i32)))
        .collect()
}

const GENRES: [&str; 5] = ["cla", "pop_roc", "jaz_blu", "cou_fol", "lat_sou"];

/// How a corpus is played and recorded beyond its score: melodies performed
/// ([`super::perform`]), clips passed through a recording chain ([`super::augment`]), and the
/// share of training songs played solo, without accompaniment or drums.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Style {
    pub augment: bool,
    pub perform: bool,
    /// 0 ≤ solo ≤ 1; drawn per song from a stream of its own, so the other songs' files are
    /// the same bytes as without it.
    pub solo: f64,
    /// Chords only on programs of no class (electric piano, harp, pad), so that no instrument
    /// of a class plays unlabelled under a line (an experiment: from scratch it made real
    /// recordings worse, MODEL.md).
    pub neutral_chords: bool,
    /// 0 ≤ share ≤ 1 of accompanied training songs in which an instrument of another class
    /// plays a second line, unlabelled, 6–14 dB under the rest; drawn per song from a stream of
    /// its own, so the other songs' files are the same bytes (an experiment: at 0.5, from
    /// scratch, it made real recordings worse, MODEL.md).
    pub counter_lines: f64,
}

#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub out: PathBuf,
    pub train_per_class: usize,
    pub test_clips: usize,
    pub seed: u64,
}

impl SynthOptions {
    /// `instrec synth`'s defaults: training clips per class, test clips, seed.
    pub const TRAIN_PER_CLASS: usize = 30;
    pub const TEST_CLIPS: usize = 60;
    pub const SEED: u64 = 0;
}

/// One file to render.
#[derive(Debug, Clone)]
enum Job {
    Train {
        class: usize,
        song: usize,
        excerpt: usize,
        song_seed: u64,
    },
    Test {
        index: usize,
    },
}

/// A musical event at a sample position.
#[derive(Debug, Clone, Copy)]
pub(super) struct Event {
    pub(super) at: usize,
    pub(super) channel: i32,
    pub(super) command: i32,
    pub(super) data1: i32,
    pub(super) data2: i32,
}

/// Song-level choices shared by the excerpts of a song.
struct Song {
    root: u8,
    minor: bool,
    beat_s: f64,
    genre: &'static str,
    drums: bool,
    chord_program: u8,
    bass_program: u8,
}

impl Song {
    /// A song for lines of the classes `avoid`, whose programs its chords do not play (nor any
    /// class's when `neutral`).
    fn random(rng: &mut Rng, avoid: &[usize], neutral: bool) -> Self {
        let genre = *rng.choose(&GENRES);
        let chord_choices: Vec<u8> = CHORD_PROGRAMS
            .iter()
            .copied()
            .filter(|p| !avoid.iter().any(|&c| PROGRAMS[c].contains(p)))
            .filter(|p| !neutral || !PROGRAMS.iter().any(|c| c.contains(p)))
            .collect();
        Self {
            root: rng.range(0, 12) as u8,
            minor: rng.f64() < 0.4,
            beat_s: 60.0 / rng.range(80, 161) as f64,
            genre,
            drums: genre != "cla" && rng.f64() < 0.6,
            chord_program: *rng.choose(&chord_choices),
            bass_program: *rng.choose(&BASS_PROGRAMS),
        }
    }

    fn scale(&self) -> [u8; 7] {
        if self.minor {
            [0, 2, 3, 5, 7, 8, 10]
        } else {
            [0, 2, 4, 5, 7, 9, 11]
        }
    }

    /// The MIDI keys of the scale inside `lo..=hi`.
    fn keys_in(&self, lo: u8, hi: u8) -> Vec<u8> {
        let scale = self.scale();
        (lo..=hi)
            .filter(|k| scale.contains(&((k + 12 - self.root) % 12)))
            .collect()
    }
}

pub(super) fn secs(t: f64) -> usize {
    (t * RATE as f64).round() as usize
}

fn program(events: &mut Vec<Event>, channel: i32, program: u8, volume: i32, pan: i32) {
    events.push(Event {
        at: 0,
        channel,
        command: 0xC0,
        data1: program as i32,
        data2: 0,
    });
    events.push(Event {
        at: 0,
        channel,
        command: 0xB0,
        data1: 7,
        data2: volume,
    });
    events.push(Event {
        at: 0,
        channel,
        command: 0xB0,
        data1: 10,
        data2: pan,
    });
}

pub(super) fn note(events: &mut Vec<Event>, channel: i32, key: u8, vel: i32, start: f64, end: f64) {
    events.push(Event {
        at: secs(start),
        channel,
        command: 0x90,
        data1: key as i32,
        data2: vel,
    });
    events.push(Event {
        at: secs(end),
        channel,
        command: 0x80,
        data1: key as i32,
        data2: 0,
    });
}

/// A melody over `0..length` seconds: a random walk on the scale with some rests.
fn melody(
    events: &mut Vec<Event>,
    rng: &mut Rng,
    song: &Song,
    (lo, hi): (u8, u8),
    channel: i32,
    length: f64,
    rests: f64,
) {
    let keys = song.keys_in(lo, hi);
    let mut i = keys.len() / 2 + rng.range(0, 5) - 2;
    let mut t = 0.0;
    while t < length {
        let dur = song.beat_s * *rng.choose(&[0.5, 1.0, 1.0, 1.5, 2.0]);
        if rng.f64() >= rests {
            let step = rng.range(0, 5) as isize - 2;
            i = (i as isize + step).clamp(0, keys.len() as isize - 1) as usize;
            let vel = velocity(rng, MELODY_VEL);
            note(
                events,
                channel,
                keys[i],
                vel,
                t,
                (t + dur * 0.95).min(length),
            );
        }
        t += dur;
    }
}

/// A predominant line: performed, or the plain melody of the paper-reproduction corpus.
#[allow(clippy::too_many_arguments)]
fn play_line(
    events: &mut Vec<Event>,
    rng: &mut Rng,
    song: &Song,
    class: usize,
    range: (u8, u8),
    channel: i32,
    length: f64,
    rests: f64,
    style: Style,
) {
    if style.perform {
        let keys = song.keys_in(range.0, range.1);
        perform::line(
            events,
            rng,
            class,
            &keys,
            song.beat_s,
            channel,
            length,
            rests,
        );
    } else {
        melody(events, rng, song, range, channel, length, rests);
    }
}

/// Programs, volumes and pans of the chord (3), bass (4) and drum (9) channels.
fn accompaniment_programs(events: &mut Vec<Event>, song: &Song, rng: &mut Rng) {
    program(events, 3, song.chord_program, 70, rng.range(30, 98) as i32);
    program(events, 4, song.bass_program, 85, 64);
    events.push(Event {
        at: 0,
        channel: 9,
        command: 0xB0,
        data1: 7,
        data2: 75,
    });
}

/// Chords every two beats on degrees I, IV, V, vi, with bass and (maybe) drums.
fn accompaniment(events: &mut Vec<Event>, rng: &mut Rng, song: &Song, length: f64) {
    let scale = song.scale();
    let degrees = [0usize, 3, 4, 5, 0, 4];
    let chord_len = 2.0 * song.beat_s;
    let mut t = 0.0;
    while t < length {
        let d = *rng.choose(&degrees);
        let end = (t + chord_len).min(length);
        for k in [d, d + 2, d + 4] {
            let pc = (song.root + scale[k % 7]) % 12;
            note(
                events,
                3,
                CHORD_KEYS.0 + pc,
                velocity(rng, CHORD_VEL),
                t,
                end,
            );
        }
        let bass = BASS_KEYS.0 + (song.root + scale[d]) % 12;
        note(events, 4, bass, velocity(rng, BASS_VEL), t, end);
        t += chord_len;
    }
    if song.drums {
        let eighth = song.beat_s / 2.0;
        let mut n = 0;
        let mut t = 0.0;
        while t < length {
            note(events, 9, HI_HAT.0, velocity(rng, HI_HAT.1), t, t + 0.05);
            if n % 4 == 0 {
                note(events, 9, KICK.0, velocity(rng, KICK.1), t, t + 0.1);
            }
            if n % 4 == 2 {
                note(events, 9, SNARE.0, velocity(rng, SNARE.1), t, t + 0.1);
            }
            n += 1;
            t += eighth;
        }
    }
}

/// Renders the events into a stereo clip of `length` seconds as the synthesizer plays them.
fn synthesize(
    sf: &Arc<SoundFont>,
    mut events: Vec<Event>,
    length: f64,
) -> Result<[Vec<f32>; 2], String> {
    let settings = SynthesizerSettings::new(RATE as i32);
    let mut synth = Synthesizer::new(sf, &settings).map_err(|e| format!("synthesizer: {e:?}"))?;
    let total = secs(length);
    events.sort_by_key(|e| (e.at, e.command == 0x90)); // note-offs before note-ons at a tie
    let mut left = vec![0f32; total];
    let mut right = vec![0f32; total];
    let mut pos = 0;
    for e in events.iter().filter(|e| e.at < total) {
        if e.at > pos {
            synth.render(&mut left[pos..e.at], &mut right[pos..e.at]);
            pos = e.at;
        }
        synth.process_midi_message(e.channel, e.command, e.data1, e.data2);
    }
    if pos < total {
        synth.render(&mut left[pos..], &mut right[pos..]);
    }
    Ok([left, right])
}

/// Scales a clip to a random peak between 0.3 and 0.9.
fn normalise([left, right]: &mut [Vec<f32>; 2], rng: &mut Rng) {
    let peak = left
        .iter()
        .chain(right.iter())
        .fold(0f32, |m, v| m.max(v.abs()));
    if peak > 0.0 {
        let gain = (0.3 + 0.6 * rng.f64()) as f32 / peak;
        for v in left.iter_mut().chain(right.iter_mut()) {
            *v *= gain;
        }
    }
}

/// Adds `line` into `mix` scaled to an RMS of `target`.
fn add_at_level(mix: &mut [Vec<f32>; 2], line: &[Vec<f32>; 2], target: f64) {
    let gain = (target / rms(line).max(1e-6)) as f32;
    for (m, l) in mix.iter_mut().zip(line) {
        for (a, b) in m.iter_mut().zip(l) {
            *a += gain * b;
        }
    }
}

fn rms([left, right]: &[Vec<f32>; 2]) -> f64 {
    let n = (left.len() + right.len()).max(1) as f64;
    (left
        .iter()
        .chain(right)
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        / n)
        .sqrt()
}

/// The events of a clip, and which library plays each predominant line (by channel).
struct Score {
    events: Vec<Event>,
    /// (channel, library) of every predominant line.
    lines: Vec<(i32, usize)>,
    /// The library of the accompaniment (and of lines on it).
    accompaniment: usize,
    /// An unlabelled line: (channel, library, dB under the rest of the clip).
    counter: Option<(i32, usize, f64)>,
}

impl Score {
    /// Renders the score, normalised: in one synthesizer when every line is on the
    /// accompaniment's library (as a one-library corpus always was); else each other library's
    /// lines on their own, each brought to a random 2–9 dB above the accompaniment's level. An
    /// unlabelled counter line is rendered on its own and added at its level under the rest.
    fn render(
        mut self,
        libraries: &[Library],
        length: f64,
        rng: &mut Rng,
    ) -> Result<[Vec<f32>; 2], String> {
        let counter = match self.counter {
            Some((ch, lib, db)) => {
                let (mine, rest): (Vec<Event>, Vec<Event>) =
                    self.events.into_iter().partition(|e| e.channel == ch);
                self.events = rest;
                Some((synthesize(&libraries[lib].font, mine, length)?, db))
            }
            None => None,
        };
        let mut mix = self.mix(libraries, length, rng)?;
        if let Some((line, db)) = counter {
            let target = rms(&mix) * 10f64.powf(-db / 20.0);
            add_at_level(&mut mix, &line, target);
        }
        normalise(&mut mix, rng);
        Ok(mix)
    }

    /// The lines and accompaniment summed, before normalising.
    fn mix(
        self,
        libraries: &[Library],
        length: f64,
        rng: &mut Rng,
    ) -> Result<[Vec<f32>; 2], String> {
        let own: Vec<(i32, usize)> = self
            .lines
            .iter()
            .copied()
            .filter(|&(_, l)| l != self.accompaniment)
            .collect();
        if own.is_empty() {
            return synthesize(&libraries[self.accompaniment].font, self.events, length);
        }
        let on = |ch: i32| own.iter().any(|&(c, _)| c == ch);
        let (apart, shared): (Vec<Event>, Vec<Event>) =
            self.events.into_iter().partition(|e| on(e.channel));
        let mut mix = synthesize(&libraries[self.accompaniment].font, shared, length)?;
        let level = rms(&mix).max(1e-4);
        for &(ch, lib) in &own {
            let mine: Vec<Event> = apart.iter().copied().filter(|e| e.channel == ch).collect();
            let line = synthesize(&libraries[lib].font, mine, length)?;
            add_at_level(
                &mut mix,
                &line,
                level * 10f64.powf((2.0 + 7.0 * rng.f64()) / 20.0),
            );
        }
        Ok(mix)
    }
}

/// The libraries a clip plays: the accompaniment's (one of the General-MIDI libraries), and for
/// each predominant class, the accompaniment's (half the time) or one of that class's own
/// instruments, all
/// chosen by `rng` (drawing nothing more where a class has no instrument of its own, so a corpus
/// of General-MIDI libraries renders as it did).
fn choose_libraries(
    libraries: &[Library],
    classes: &[usize],
    rng: &mut Rng,
) -> (usize, Vec<usize>) {
    let general: Vec<usize> = (0..libraries.len())
        .filter(|&i| libraries[i].class.is_none())
        .collect();
    let accompaniment = match general.len() {
        1 => general[0],
        n => general[rng.range(0, n)],
    };
    let lines = classes
        .iter()
        .map(|&c| line_library(libraries, c, accompaniment, rng))
        .collect();
    (accompaniment, lines)
}

/// The library of a line of `class`: half the time the accompaniment's General-MIDI one, else
/// one of the class's own instruments (always the accompaniment's where it has none).
fn line_library(libraries: &[Library], class: usize, accompaniment: usize, rng: &mut Rng) -> usize {
    let own: Vec<usize> = (0..libraries.len())
        .filter(|&i| libraries[i].class == Some(class))
        .collect();
    if own.is_empty() || rng.f64() < 0.5 {
        accompaniment
    } else {
        own[rng.range(0, own.len())]
    }
}

/// A class's melodic range inside the keys its library plays.
fn line_range(class: usize, library: &Library) -> (u8, u8) {
    let (lo, hi) = RANGES[class];
    match library.keys {
        Some((a, b)) if a.max(lo) + 12 <= b.min(hi) => (a.max(lo), b.min(hi)),
        Some((a, b)) if a + 12 <= b => (a, b),
        _ => (lo, hi),
    }
}

/// The channel of a counter line (lines 0–2, chords 3, bass 4, drums 9).
const COUNTER_CHANNEL: i32 = 5;

/// With probability `style.counter_lines` per song, a line of another class (its class,
/// program and library drawn per song, its notes and level per excerpt, all from a stream of
/// its own) written into `events`.
fn counter_line(
    libraries: &[Library],
    style: Style,
    class: usize,
    accompaniment: usize,
    song: &Song,
    (song_seed, excerpt, length): (u64, usize, f64),
    events: &mut Vec<Event>,
) -> Option<CounterLine> {
    if style.counter_lines <= 0.0 {
        return None;
    }
    let mut rng = Rng::derive(song_seed, COUNTER_STREAM);
    if rng.f64() >= style.counter_lines {
        return None;
    }
    let other = (class + rng.range(1, CLASSES.len())) % CLASSES.len();
    let program_no = *rng.choose(PROGRAMS[other]);
    let library = line_library(libraries, other, accompaniment, &mut rng);
    let mut rng = Rng::derive(rng.next_u64(), excerpt as u64 + 1);
    program(
        events,
        COUNTER_CHANNEL,
        program_no,
        120,
        rng.range(30, 98) as i32,
    );
    let range = line_range(other, &libraries[library]);
    play_line(
        events,
        &mut rng,
        song,
        other,
        range,
        COUNTER_CHANNEL,
        length,
        0.3,
        style,
    );
    Some(CounterLine {
        class: CLASSES[other].to_string(),
        program: program_no,
        library,
        below_db: 6.0 + 8.0 * rng.f64(),
    })
}

fn train_name(class: usize, song: &Song, song_no: usize, excerpt: usize) -> String {
    let drum = if song.drums { "[dru]" } else { "[nod]" };
    format!(
        "[{}]{drum}[{}]{song_no:04}__{}.wav",
        CLASSES[class],
        song.genre,
        excerpt + 1
    )
}

/// What [`render_corpus`] wrote.
#[derive(Debug, Clone, Default)]
pub struct SynthReport {
    pub train_files: usize,
    pub test_files: usize,
    pub audio_seconds: f64,
}

/// Salts of the streams that choose a clip's library and its augmentation: apart from the ones
/// that write the music, so a one-library corpus without augmentation is the same as before.
const LIBRARY_STREAM: u64 = 0x6C69_6272;
const AUGMENT_STREAM: u64 = 0x6175_676D;
const SOLO_STREAM: u64 = 0x736F_6C6F;
const COUNTER_STREAM: u64 = 0x636E_7472;

/// Renders the corpus into `opts.out` (created; existing files with the same names are
/// replaced), calling `progress(done, total)` as files are written.
pub fn render_corpus(
    sf: &Arc<SoundFont>,
    opts: &SynthOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<SynthReport, FileError> {
    render_corpus_with(&[Library::from_font(sf)], Style::default(), opts, progress)
}

/// [`render_corpus`] from several libraries — each song or test clip from one, chosen by the
/// seed — played as `style` says: performed, and through [`super::augment`] (a song's excerpts share their
/// recording chain). The manifest records every library (name, SHA-256) and, for every file,
/// its library and augmentation.
pub fn render_corpus_with(
    libraries: &[Library],
    style: Style,
    opts: &SynthOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<SynthReport, FileError> {
    if libraries.is_empty() {
        return Err(FileError::at(&opts.out, "no SoundFont to render from"));
    }
    if libraries.iter().all(|l| l.class.is_some()) {
        return Err(FileError::at(
            &opts.out,
            "no General-MIDI SoundFont among the libraries: the accompaniment and the classes \
             without an instrument of their own need one",
        ));
    }
    let used = presets_used();
    for lib in libraries {
        let wanted: Vec<PresetUse> = match lib.class {
            None => used.clone(),
            Some(c) => used
                .iter()
                .filter(|u| u.bank == 0 && PROGRAMS[c].contains(&(u.program as u8)))
                .cloned()
                .collect(),
        };
        let missing = missing_presets(&lib.font, &wanted);
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|(b, p)| format!("bank {b} program {p}"))
                .collect();
            return Err(FileError::new(
                &lib.name,
                format!(
                    "lacks presets the corpus plays ({}): a library must hold every General-MIDI \
                     program of the classes, the accompaniment and the drum kit",
                    list.join(", ")
                ),
            ));
        }
    }
    let mut jobs = Vec::new();
    for class in 0..CLASSES.len() {
        let mut made = 0;
        let mut song = 0;
        let mut song_rng = Rng::derive(opts.seed, 1_000_000 + class as u64);
        while made < opts.train_per_class {
            let excerpts = song_rng.range(1, 4).min(opts.train_per_class - made);
            let song_seed = song_rng.next_u64();
            for excerpt in 0..excerpts {
                jobs.push(Job::Train {
                    class,
                    song,
                    excerpt,
                    song_seed,
                });
            }
            made += excerpts;
            song += 1;
        }
    }
    jobs.extend((0..opts.test_clips).map(|index| Job::Test { index }));
    // The folder becomes exactly what these settings make: a previous corpus is cleared (never
    // mixed in), a folder holding anything else is refused. The manifest says "incomplete" until
    // the last file is written.
    let mut manifest = Manifest::new(libraries, style, opts);
    clear_for(&opts.out)?;
    write_manifest(&opts.out, &manifest)?;
    let train_root = opts.out.join(TRAIN_DIR);
    for c in CLASSES {
        std::fs::create_dir_all(train_root.join(c)).map_err(|e| FileError::at(&train_root, e))?;
    }
    for p in 1..=3 {
        let d = opts
            .out
            .join(format!("{TEST_DIR_PREFIX}{p}"))
            .join(format!("Part{p}"));
        std::fs::create_dir_all(&d).map_err(|e| FileError::at(&d, e))?;
    }
    let done = AtomicUsize::new(0);
    let rendered: Result<Vec<(f64, FileRecord)>, FileError> = jobs
        .par_iter()
        .map(|job| {
            let s = render_job(libraries, style, opts, job)?;
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
            Ok(s)
        })
        .collect();
    let (seconds, files): (Vec<f64>, Vec<FileRecord>) = rendered?.into_iter().unzip();
    manifest.files = files;
    manifest.complete = true;
    write_manifest(&opts.out, &manifest)?;
    Ok(SynthReport {
        train_files: jobs
            .iter()
            .filter(|j| matches!(j, Job::Train { .. }))
            .count(),
        test_files: opts.test_clips,
        audio_seconds: seconds.iter().sum(),
    })
}

/// `instrec synth`'s record in a corpus folder: the settings it was rendered with.
pub const MANIFEST: &str = "instrec-synth.json";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Manifest {
    seed: u64,
    train_per_class: usize,
    test_clips: usize,
    /// The SoundFonts' names and sizes (a different SoundFont renders a different corpus).
    soundfont: String,
    instrec_version: String,
    complete: bool,
    /// Every library rendered from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    libraries: Vec<LibraryRecord>,
    #[serde(default)]
    augmented: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    performed: bool,
    /// The share of training songs played solo (`Style::solo`).
    #[serde(default, skip_serializing_if = "is_zero")]
    solo: f64,
    /// Chords only on programs of no class (`Style::neutral_chords`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    neutral_chords: bool,
    /// The share of accompanied training songs with an unlabelled counter line.
    #[serde(default, skip_serializing_if = "is_zero")]
    counter_lines: f64,
    /// Every file's source, in rendering order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileRecord>,
}

/// A library of a corpus.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LibraryRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The class of an instrument library; none for a General-MIDI one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Every file an instrument library read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileHash>,
}

impl LibraryRecord {
    pub fn of(l: &Library) -> Self {
        Self {
            name: l.name.clone(),
            sha256: l.sha256.clone(),
            class: l.class.map(|c| CLASSES[c].to_string()),
            licence: l.licence.clone(),
            source: l.source.clone(),
            files: l.files.clone(),
        }
    }
}

/// Where one rendered file came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    /// Relative to the corpus folder.
    pub path: String,
    /// Index into the manifest's libraries: the accompaniment's (and every line's, unless
    /// `line_libraries` says otherwise).
    pub library: usize,
    /// The library of each predominant line, where one is not the accompaniment's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line_libraries: Vec<usize>,
    /// General-MIDI programs of the predominant line(s).
    pub programs: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub augmentation: Vec<String>,
    /// Played solo: no chords, bass or drums (`Style::solo`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub solo: bool,
    /// The General-MIDI program of the chords under the lines (none when played solo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chords: Option<u8>,
    /// The unlabelled counter line, where one plays (`Style::counter_lines`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<CounterLine>,
}

/// An unlabelled line of another class under a training clip's predominant line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CounterLine {
    pub class: String,
    pub program: u8,
    /// Index into the manifest's libraries.
    pub library: usize,
    /// Its level under the rest of the clip (RMS, dB).
    pub below_db: f64,
}

impl Manifest {
    fn new(libraries: &[Library], style: Style, opts: &SynthOptions) -> Self {
        let describe = |sf: &SoundFont| {
            format!(
                "{} ({} samples, {} presets)",
                sf.get_info().get_bank_name(),
                sf.get_wave_data().len(),
                sf.get_presets().len()
            )
        };
        Self {
            seed: opts.seed,
            train_per_class: opts.train_per_class,
            test_clips: opts.test_clips,
            soundfont: libraries
                .iter()
                .map(|l| describe(&l.font))
                .collect::<Vec<_>>()
                .join("; "),
            instrec_version: env!("CARGO_PKG_VERSION").into(),
            complete: false,
            libraries: libraries.iter().map(LibraryRecord::of).collect(),
            augmented: style.augment,
            performed: style.perform,
            solo: style.solo,
            neutral_chords: style.neutral_chords,
            counter_lines: style.counter_lines,
            files: Vec::new(),
        }
    }
}

/// A zero share is left out of the manifest, so corpora made without `--solo` keep theirs as it was.
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The libraries of a corpus folder's manifest (empty when it has none).
pub fn library_records(dir: &Path) -> Vec<LibraryRecord> {
    read_manifest(dir).map_or_else(Vec::new, |m| m.libraries)
}

/// The per-file sources of a corpus folder's manifest (empty when it has none).
pub fn file_records(dir: &Path) -> Vec<FileRecord> {
    read_manifest(dir).map_or_else(Vec::new, |m| m.files)
}

/// The class of each file whose chords a class's General-MIDI program plays (piano, organ, nylon
/// guitar), keyed by its path in the manifest (relative to the corpus folder): what
/// `train --label-chords` labels beside the line. A folder without a manifest is refused.
pub fn chord_classes(dir: &Path) -> Result<std::collections::HashMap<String, usize>, FileError> {
    let m = read_manifest(dir).ok_or_else(|| {
        FileError::at(
            &dir.join(MANIFEST),
            "missing or unreadable: labelling chords needs a corpus made by instrec synth",
        )
    })?;
    Ok(m.files
        .iter()
        .filter_map(|f| {
            let program = f.chords?;
            let class = PROGRAMS.iter().position(|ps| ps.contains(&program))?;
            Some((f.path.clone(), class))
        })
        .collect())
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), FileError> {
    std::fs::create_dir_all(dir).map_err(|e| FileError::at(dir, e))?;
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(m).map_err(|e| FileError::at(&path, e))?;
    write_atomic(&path, &json).map_err(|e| FileError::at(&path, e))
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).ok()?).ok()
}

/// Whether `dir` holds a complete corpus rendered with exactly these settings and SoundFont.
pub fn corpus_is_complete(dir: &Path, sf: &Arc<SoundFont>, opts: &SynthOptions) -> bool {
    let mut want = Manifest::new(&[Library::from_font(sf)], Style::default(), opts);
    want.complete = true;
    read_manifest(dir).is_some_and(|m| {
        Manifest {
            instrec_version: want.instrec_version.clone(),
            files: Vec::new(),
            ..m
        } == want
    })
}

/// Whether `demo` and `experiment` must render their corpus into `dir`: not when a complete one
/// of these settings is there, nor when an IRMAS layout without a manifest is (rendered before
/// instrec recorded its settings; it is used as it is, as those versions did).
pub fn needs_render(dir: &Path, sf: &Arc<SoundFont>, opts: &SynthOptions) -> bool {
    let legacy = dir.join(TRAIN_DIR).is_dir() && !dir.join(MANIFEST).exists();
    !legacy && !corpus_is_complete(dir, sf, opts)
}

/// Empties a folder that a previous `instrec synth` made (its manifest and IRMAS folders); a
/// folder with anything else in it is refused, so a corpus never mixes with other files.
fn clear_for(dir: &Path) -> Result<(), FileError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let ours = |n: &str| n == MANIFEST || n == TRAIN_DIR || n.starts_with(TEST_DIR_PREFIX);
    if read_manifest(dir).is_none() || !names.iter().all(|n| ours(n)) {
        return Err(FileError::at(
            dir,
            "not empty and not a corpus made by instrec synth; choose an empty or new folder",
        ));
    }
    for n in names.iter().filter(|n| *n != MANIFEST) {
        let p = dir.join(n);
        std::fs::remove_dir_all(&p).map_err(|e| FileError::at(&p, e))?;
    }
    Ok(())
}

fn render_job(
    libraries: &[Library],
    style: Style,
    opts: &SynthOptions,
    job: &Job,
) -> Result<(f64, FileRecord), FileError> {
    // A library and an augmentation stream per song (its excerpts share one recording chain) or
    // per test clip, each derived from that seed by a salt of its own.
    let (source_seed, class) = match *job {
        Job::Train {
            song_seed, class, ..
        } => (song_seed, Some(class)),
        Job::Test { index } => (
            Rng::derive(opts.seed, 3_000_000 + index as u64).next_u64(),
            None,
        ),
    };
    let mut library_rng = Rng::derive(source_seed, LIBRARY_STREAM);
    let finish = |mut lr: [Vec<f32>; 2]| {
        let steps = if style.augment {
            augment(
                &mut lr,
                RATE,
                class,
                &mut Rng::derive(source_seed, AUGMENT_STREAM),
            )
            .steps
        } else {
            Vec::new()
        };
        (lr, steps)
    };
    let record = |path: &Path,
                  programs: Vec<u8>,
                  augmentation: Vec<String>,
                  score: &(usize, Vec<usize>)| FileRecord {
        path: path
            .strip_prefix(&opts.out)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned(),
        library: score.0,
        line_libraries: if score.1.iter().all(|&l| l == score.0) {
            Vec::new()
        } else {
            score.1.clone()
        },
        programs,
        augmentation,
        solo: false,
        chords: None,
        counter: None,
    };
    match *job {
        Job::Train {
            class,
            song: song_no,
            excerpt,
            song_seed,
        } => {
            let mut song_rng = Rng::new(song_seed);
            let mut song = Song::random(&mut song_rng, &[class], style.neutral_chords);
            let solo = style.solo > 0.0 && Rng::derive(song_seed, SOLO_STREAM).f64() < style.solo;
            song.drums &= !solo;
            let melody_program = *song_rng.choose(PROGRAMS[class]);
            let (accompaniment_lib, lines) =
                choose_libraries(libraries, &[class], &mut library_rng);
            let mut rng = Rng::derive(song_seed, excerpt as u64 + 1);
            let length = 3.0;
            let mut events = Vec::new();
            program(&mut events, 0, melody_program, 120, 64);
            accompaniment_programs(&mut events, &song, &mut rng);
            let range = line_range(class, &libraries[lines[0]]);
            play_line(
                &mut events,
                &mut rng,
                &song,
                class,
                range,
                0,
                length,
                0.05,
                style,
            );
            if !solo {
                accompaniment(&mut events, &mut rng, &song, length);
            }
            let counter = if solo {
                None
            } else {
                let at = (song_seed, excerpt, length);
                counter_line(
                    libraries,
                    style,
                    class,
                    accompaniment_lib,
                    &song,
                    at,
                    &mut events,
                )
            };
            let score = Score {
                events,
                lines: vec![(0, lines[0])],
                accompaniment: accompaniment_lib,
                counter: counter
                    .as_ref()
                    .map(|c| (COUNTER_CHANNEL, c.library, c.below_db)),
            };
            let rendered = score
                .render(libraries, length, &mut rng)
                .map_err(|e| FileError::at(&opts.out, e))?;
            let ([l, r], steps) = finish(rendered);
            let path = opts
                .out
                .join(TRAIN_DIR)
                .join(CLASSES[class])
                .join(train_name(class, &song, song_no, excerpt));
            write_wav_i16(&path, RATE, &[l, r]).map_err(|e| FileError::at(&path, e))?;
            Ok((
                length,
                FileRecord {
                    solo,
                    chords: (!solo).then_some(song.chord_program),
                    counter,
                    ..record(
                        &path,
                        vec![melody_program],
                        steps,
                        &(accompaniment_lib, lines),
                    )
                },
            ))
        }
        Job::Test { index } => {
            let mut rng = Rng::derive(opts.seed, 2_000_000 + index as u64);
            let n = [1, 1, 2, 2, 3][rng.range(0, 5)];
            let mut classes: Vec<usize> = (0..CLASSES.len()).collect();
            rng.shuffle(&mut classes);
            classes.truncate(n);
            classes.sort_unstable();
            let song = Song::random(&mut rng, &classes, style.neutral_chords);
            let (accompaniment_lib, lines) =
                choose_libraries(libraries, &classes, &mut library_rng);
            let length = 5.0 + 15.0 * rng.f64();
            let mut events = Vec::new();
            let mut programs = Vec::new();
            for (ch, &c) in classes.iter().enumerate() {
                let pan = [64, 40, 88][ch];
                let p = *rng.choose(PROGRAMS[c]);
                programs.push(p);
                program(&mut events, ch as i32, p, 120, pan);
                let range = line_range(c, &libraries[lines[ch]]);
                play_line(
                    &mut events,
                    &mut rng,
                    &song,
                    c,
                    range,
                    ch as i32,
                    length,
                    0.15,
                    style,
                );
            }
            accompaniment_programs(&mut events, &song, &mut rng);
            accompaniment(&mut events, &mut rng, &song, length);
            let score = Score {
                events,
                lines: lines
                    .iter()
                    .enumerate()
                    .map(|(ch, &l)| (ch as i32, l))
                    .collect(),
                accompaniment: accompaniment_lib,
                counter: None,
            };
            let rendered = score
                .render(libraries, length, &mut rng)
                .map_err(|e| FileError::at(&opts.out, e))?;
            let ([l, r], steps) = finish(rendered);
            let part = 1 + index % 3;
            let dir = opts
                .out
                .join(format!("{TEST_DIR_PREFIX}{part}"))
                .join(format!("Part{part}"));
            let stem = format!(
                "{:03} - Synthetic Song {}-{}",
                index + 1,
                index + 1,
                1 + index % 4
            );
            let wav = dir.join(format!("{stem}.wav"));
            write_wav_i16(&wav, RATE, &[l, r]).map_err(|e| FileError::at(&wav, e))?;
            let labels: String = classes
                .iter()
                .map(|&c| format!("{}\t\n", CLASSES[c]))
                .collect();
            let txt = dir.join(format!("{stem}.txt"));
            write_atomic(&txt, labels.as_bytes()).map_err(|e| FileError::at(&txt, e))?;
            Ok((
                length,
                FileRecord {
                    chords: Some(song.chord_program),
                    ..record(&wav, programs, steps, &(accompaniment_lib, lines))
                },
            ))
        }
    }
}
