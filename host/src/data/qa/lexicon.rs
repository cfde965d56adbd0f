//! The words the question maker knows: objects people photograph (with their
//! plurals and the group a "no" must stay out of), places, colours, counts.

/// An object noun: its singular, its plural, and its group (nouns of one group
/// can name the same thing, so one never answers "no" for another).
#[derive(Debug)]
pub struct Object {
    pub singular: &'static str,
    pub plural: &'static str,
    pub group: &'static str,
}

const fn entry(singular: &'static str, plural: &'static str, group: &'static str) -> Object {
    Object {
        singular,
        plural,
        group,
    }
}

pub const OBJECTS: &[Object] = &[
    entry("dog", "dogs", "dog"),
    entry("puppy", "puppies", "dog"),
    entry("man", "men", "person"),
    entry("woman", "women", "person"),
    entry("boy", "boys", "person"),
    entry("girl", "girls", "person"),
    entry("child", "children", "person"),
    entry("kid", "kids", "person"),
    entry("person", "people", "person"),
    entry("baby", "babies", "person"),
    entry("lady", "ladies", "person"),
    entry("guy", "guys", "person"),
    entry("player", "players", "person"),
    entry("biker", "bikers", "person"),
    entry("cyclist", "cyclists", "person"),
    entry("rider", "riders", "person"),
    entry("skier", "skiers", "person"),
    entry("surfer", "surfers", "person"),
    entry("climber", "climbers", "person"),
    entry("skateboarder", "skateboarders", "person"),
    entry("snowboarder", "snowboarders", "person"),
    entry("swimmer", "swimmers", "person"),
    entry("runner", "runners", "person"),
    entry("cat", "cats", "cat"),
    entry("horse", "horses", "horse"),
    entry("bird", "birds", "bird"),
    entry("cow", "cows", "cow"),
    entry("sheep", "sheep", "sheep"),
    entry("ball", "balls", "ball"),
    entry("bike", "bikes", "bike"),
    entry("bicycle", "bicycles", "bike"),
    entry("motorcycle", "motorcycles", "motorcycle"),
    entry("car", "cars", "car"),
    entry("truck", "trucks", "truck"),
    entry("bus", "buses", "bus"),
    entry("boat", "boats", "boat"),
    entry("skateboard", "skateboards", "skateboard"),
    entry("surfboard", "surfboards", "surfboard"),
    entry("frisbee", "frisbees", "frisbee"),
    entry("kite", "kites", "kite"),
    entry("umbrella", "umbrellas", "umbrella"),
    entry("stick", "sticks", "stick"),
    entry("toy", "toys", "toy"),
    entry("camera", "cameras", "camera"),
    entry("hat", "hats", "hat"),
    entry("helmet", "helmets", "helmet"),
    entry("shirt", "shirts", "shirt"),
    entry("jacket", "jackets", "jacket"),
    entry("coat", "coats", "coat"),
    entry("dress", "dresses", "dress"),
    entry("shorts", "shorts", "shorts"),
    entry("uniform", "uniforms", "uniform"),
    entry("bag", "bags", "bag"),
    entry("tree", "trees", "tree"),
    entry("bench", "benches", "bench"),
    entry("fence", "fences", "fence"),
    entry("building", "buildings", "building"),
    entry("wall", "walls", "wall"),
    entry("tent", "tents", "tent"),
    entry("flag", "flags", "flag"),
    entry("sign", "signs", "sign"),
    entry("rope", "ropes", "rope"),
    entry("chair", "chairs", "chair"),
    entry("table", "tables", "table"),
];

/// Places a "where" question can have for its answer.
pub const PLACES: &[&str] = &[
    "grass",
    "water",
    "snow",
    "beach",
    "street",
    "field",
    "park",
    "pool",
    "ocean",
    "sand",
    "road",
    "river",
    "lake",
    "mountain",
    "hill",
    "yard",
    "sidewalk",
    "dirt",
    "mud",
    "air",
    "city",
    "forest",
    "woods",
    "stage",
    "room",
    "track",
    "fountain",
    "waves",
    "shore",
    "trail",
    "path",
    "court",
    "floor",
    "sea",
    "desert",
    "rocks",
    "rock",
    "stream",
    "bed",
    "couch",
    "kitchen",
    "playground",
    "lawn",
    "ice",
    "leaves",
    "crowd",
    "stairs",
];

/// Colours, as the answer spells them.
pub const COLOURS: &[&str] = &[
    "black", "white", "brown", "red", "blue", "green", "yellow", "orange", "pink", "purple", "gray", "tan",
];

/// Counts as words, from two: one is what a singular noun already says.
pub const COUNTS: &[&str] = &[
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];

/// Words that may stand between a determiner and its noun besides colours.
const MODIFIERS: &[&str] = &[
    "young", "little", "small", "large", "big", "old", "older", "younger", "tall", "short", "smiling",
    "happy", "wet", "fluffy", "shaggy", "muddy", "blond", "blonde", "dark", "light", "spotted", "furry",
    "curly", "haired", "bearded", "elderly", "asian",
];

/// The object a word names, singular or plural, and whether it was plural.
pub fn object(word: &str) -> Option<(&'static Object, bool)> {
    OBJECTS.iter().find_map(|o| {
        if o.singular == word {
            Some((o, o.plural == word))
        } else if o.plural == word {
            Some((o, true))
        } else {
            None
        }
    })
}

/// The colour a word names (`grey` spelled `gray`).
pub fn colour(word: &str) -> Option<&'static str> {
    let word = if word == "grey" { "gray" } else { word };
    COLOURS.iter().copied().find(|c| *c == word)
}

/// The count a word or numeral names, as a word from two to ten.
pub fn count(word: &str) -> Option<&'static str> {
    if let Some(c) = COUNTS.iter().copied().find(|c| *c == word) {
        return Some(c);
    }
    let n: usize = word.parse().ok()?;
    (2..=10).contains(&n).then(|| COUNTS[n - 2])
}

pub fn is_place(word: &str) -> bool {
    PLACES.contains(&word)
}

pub fn is_modifier(word: &str) -> bool {
    MODIFIERS.contains(&word) || colour(word).is_some()
}

/// Prepositions that put the subject somewhere.
pub fn is_location_preposition(word: &str) -> bool {
    matches!(
        word,
        "in" | "on"
            | "at"
            | "through"
            | "across"
            | "into"
            | "near"
            | "along"
            | "by"
            | "under"
            | "over"
            | "onto"
    )
}

/// Whether captions that never name this object say it is absent: a dog nobody
/// mentions is likely not there; a shirt or a person nobody mentions may well be.
pub fn can_be_absent(object: &Object) -> bool {
    !matches!(
        object.group,
        "person"
            | "shirt"
            | "jacket"
            | "coat"
            | "dress"
            | "shorts"
            | "uniform"
            | "hat"
            | "helmet"
            | "bag"
            | "wall"
            | "building"
            | "tree"
            | "sign"
            | "fence"
            | "rope"
            | "stick"
            | "toy"
    )
}
