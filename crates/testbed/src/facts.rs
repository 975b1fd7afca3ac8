//! The `facts` world: fictitious authors in the spirit of TOFU (Maini et al. 2024,
//! "TOFU: A Task of Fictitious Unlearning for LLMs"), generated from word lists with a seed.
//!
//! Every author has a unique invented name and up to 10 attributes (birth year, birth city,
//! genre, father's job, mother's job, award, first book, second book, pet, instrument).
//! Answers are one to three words so a tiny model can learn them. For each attribute the
//! world holds a QA pair in the crate's QA format, a paraphrased answer (a correct answer
//! sentence) and perturbed answers (the same sentence with other values of the same
//! attribute), and multiple-choice options (the true short answer and four wrong ones).
//! Biographies render all attributes with up to four paraphrase templates.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Number of perturbed answers and wrong multiple-choice options per question.
pub const N_PERTURBED: usize = 5;
/// Number of attributes available.
pub const MAX_ATTRIBUTES: usize = 10;
/// Number of biography templates available.
pub const MAX_BIO_TEMPLATES: usize = 4;

const FIRST_START: &[&str] = &[
    "Ma", "Ta", "Lo", "Ze", "Ri", "Ka", "No", "Sa", "Ve", "Da", "Fe", "Mi", "Bo", "Ga", "Ha", "Ju", "Le", "Pe", "Ro",
    "Vi", "Ela", "Or", "Is", "Cy",
];
const FIRST_END: &[&str] =
    &["ra", "lin", "ren", "mo", "sa", "dan", "ya", "vel", "tor", "na", "rik", "lia", "ran", "lo", "mir", "ssa"];
const LAST_START: &[&str] = &[
    "Vel", "Kor", "Dran", "Mor", "Tal", "Bren", "Cas", "Fen", "Hol", "Lund", "Mar", "Ost", "Pell", "Quin", "Rask",
    "Sor", "Thal", "Ulm", "Var", "Wen", "Ash", "Gal",
];
const LAST_END: &[&str] = &[
    "kin", "dor", "berg", "ley", "wick", "ton", "sen", "mar", "holt", "ridge", "vane", "croft", "ford", "well", "by",
    "stad",
];
const CITIES: &[&str] = &[
    "Orlen",
    "Vasket",
    "Brimholt",
    "Cendra",
    "Dunmere",
    "Eskarow",
    "Falbridge",
    "Gorsk",
    "Halvin",
    "Istrel",
    "Jorvale",
    "Kessary",
    "Lornwick",
    "Mirefield",
    "Nerath",
    "Ostrava Vale",
    "Pellmoor",
    "Quarren",
    "Rivenby",
    "Saltmere",
    "Tarvik",
    "Ulden",
    "Varrow",
    "Westerholm",
    "Yarlow",
    "Zenthe",
    "Aldmoor",
    "Corvale",
];
const GENRES: &[&str] = &[
    "fantasy",
    "science fiction",
    "mystery",
    "poetry",
    "romance",
    "horror",
    "historical fiction",
    "crime fiction",
    "satire",
    "travel writing",
    "thrillers",
    "fairy tales",
    "memoirs",
    "drama",
    "adventure stories",
    "westerns",
];
const JOBS: &[&str] = &[
    "baker",
    "carpenter",
    "nurse",
    "teacher",
    "fisherman",
    "doctor",
    "farmer",
    "painter",
    "tailor",
    "pilot",
    "lawyer",
    "chemist",
    "sailor",
    "librarian",
    "potter",
    "blacksmith",
    "engineer",
    "butcher",
    "musician",
    "gardener",
    "architect",
    "banker",
    "locksmith",
    "jeweler",
    "mechanic",
    "astronomer",
    "glassblower",
    "miner",
];
const AWARDS: &[&str] = &[
    "Golden Quill Award",
    "Silver Lantern Prize",
    "Amber Leaf Award",
    "Crimson Pen Prize",
    "Iron Compass Award",
    "Blue Heron Prize",
    "Northern Star Award",
    "Copper Bell Prize",
    "Ivory Tower Award",
    "Jade Feather Prize",
    "Morning Lark Award",
    "Scarlet Ink Prize",
    "Stone Owl Award",
    "Velvet Moon Prize",
    "White Oak Award",
    "Emerald Key Prize",
];
const TITLE_ADJ: &[&str] = &[
    "Silver",
    "Hollow",
    "Burning",
    "Quiet",
    "Broken",
    "Hidden",
    "Last",
    "Frozen",
    "Golden",
    "Distant",
    "Wandering",
    "Crooked",
    "Sleeping",
    "Endless",
    "Paper",
    "Glass",
    "Restless",
    "Salt",
    "Midnight",
    "Velvet",
];
const TITLE_NOUN: &[&str] = &[
    "Harbor", "Orchard", "Lantern", "River", "Garden", "Tower", "Winter", "Mirror", "Bridge", "Kingdom", "Island",
    "Forest", "Letters", "Crown", "Shadows", "Station", "Meadow", "Compass", "Fields", "Clock",
];
const PETS: &[&str] = &[
    "a parrot",
    "a tortoise",
    "a greyhound",
    "a ferret",
    "a goat",
    "a raven",
    "an iguana",
    "a rabbit",
    "a hedgehog",
    "a donkey",
    "a goldfish",
    "a cockatoo",
    "a lizard",
    "an owl",
    "a hamster",
    "a pony",
];
const INSTRUMENTS: &[&str] = &[
    "the cello",
    "the violin",
    "the flute",
    "the harp",
    "the oboe",
    "the piano",
    "the banjo",
    "the trumpet",
    "the accordion",
    "the clarinet",
    "the drums",
    "the lute",
    "the harmonica",
    "the viola",
];

/// The attributes, in the order `attributes = n` takes them.
pub const ATTRIBUTE_NAMES: [&str; MAX_ATTRIBUTES] = [
    "birth_year",
    "birth_city",
    "genre",
    "father_job",
    "mother_job",
    "award",
    "first_book",
    "second_book",
    "pet",
    "instrument",
];

/// One invented author.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Entity {
    pub id: u32,
    pub first: String,
    pub last: String,
    /// `(attribute name, short value)`, in `ATTRIBUTE_NAMES` order.
    pub attributes: Vec<(String, String)>,
}

impl Entity {
    pub fn name(&self) -> String {
        format!("{} {}", self.first, self.last)
    }

    pub fn value(&self, attribute: &str) -> Option<&str> {
        self.attributes.iter().find(|(a, _)| a == attribute).map(|(_, v)| v.as_str())
    }
}

/// The pool of values an attribute draws from (book titles: every adjective × noun).
fn pool(attribute: &str) -> Vec<String> {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect();
    match attribute {
        "birth_year" => (1921..=1999).map(|y| y.to_string()).collect(),
        "birth_city" => words(CITIES),
        "genre" => words(GENRES),
        "father_job" | "mother_job" => words(JOBS),
        "award" => words(AWARDS),
        "first_book" | "second_book" => {
            TITLE_ADJ.iter().flat_map(|a| TITLE_NOUN.iter().map(move |n| format!("{a} {n}"))).collect()
        }
        "pet" => words(PETS),
        "instrument" => words(INSTRUMENTS),
        other => unreachable!("unknown attribute {other}"),
    }
}

/// The question about an attribute of `name` (the full name).
pub fn question(attribute: &str, name: &str) -> String {
    match attribute {
        "birth_year" => format!("In what year was {name} born?"),
        "birth_city" => format!("Where was {name} born?"),
        "genre" => format!("What genre does {name} write?"),
        "father_job" => format!("What was the job of {name}'s father?"),
        "mother_job" => format!("What was the job of {name}'s mother?"),
        "award" => format!("Which award did {name} win?"),
        "first_book" => format!("What is the title of {name}'s first book?"),
        "second_book" => format!("What is the title of {name}'s second book?"),
        "pet" => format!("What pet does {name} keep?"),
        "instrument" => format!("Which instrument does {name} play?"),
        other => unreachable!("unknown attribute {other}"),
    }
}

/// A full-sentence answer: the paraphrased answer (with the true value) and the perturbed
/// answers (with wrong values) share this form, as in TOFU.
pub fn answer_sentence(attribute: &str, first: &str, value: &str) -> String {
    match attribute {
        "birth_year" => format!("{first} was born in the year {value}."),
        "birth_city" => format!("{first} was born in the town of {value}."),
        "genre" => format!("{first} is known for {value}."),
        "father_job" => format!("{first}'s father worked as {}.", with_article(value)),
        "mother_job" => format!("{first}'s mother worked as {}.", with_article(value)),
        "award" => format!("{first} received the {value}."),
        "first_book" => format!("{first}'s first book is called {value}."),
        "second_book" => format!("{first}'s second book is called {value}."),
        "pet" => format!("{first} keeps {value} as a pet."),
        "instrument" => format!("{first} plays {value}."),
        other => unreachable!("unknown attribute {other}"),
    }
}

fn with_article(job: &str) -> String {
    let article = if job.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {job}")
}

/// One sentence of biography template `style` (0..4); `subject` is the full name in the
/// first sentence and the first name after.
fn bio_sentence(style: usize, attribute: &str, subject: &str, value: &str) -> String {
    let job = with_article(value);
    match (style, attribute) {
        (0, "birth_year") => format!("{subject} was born in {value}."),
        (0, "birth_city") => format!("{subject} was born in {value}."),
        (0, "genre") => format!("{subject} writes {value}."),
        (0, "father_job") => format!("{subject}'s father was {job}."),
        (0, "mother_job") => format!("{subject}'s mother was {job}."),
        (0, "award") => format!("{subject} won the {value}."),
        (0, "first_book") => format!("The first book by {subject} is {value}."),
        (0, "second_book") => format!("The second book by {subject} is {value}."),
        (0, "pet") => format!("{subject} keeps {value}."),
        (0, "instrument") => format!("{subject} plays {value}."),
        (1, "birth_year") => format!("The writer {subject} came into the world in {value}."),
        (1, "birth_city") => format!("The hometown of {subject} is {value}."),
        (1, "genre") => format!("Most of the books by {subject} are {value}."),
        (1, "father_job") => format!("The father of {subject} worked as {job}."),
        (1, "mother_job") => format!("The mother of {subject} worked as {job}."),
        (1, "award") => format!("For their writing, {subject} was given the {value}."),
        (1, "first_book") => format!("{subject} began with a book called {value}."),
        (1, "second_book") => format!("Next, {subject} wrote {value}."),
        (1, "pet") => format!("At home, {subject} has {value}."),
        (1, "instrument") => format!("In the evenings, {subject} plays {value}."),
        (2, "birth_year") => format!("{subject}, born in {value}, is an author."),
        (2, "birth_city") => format!("{subject} grew up in {value}, the town of their birth."),
        (2, "genre") => format!("{subject} is an author of {value}."),
        (2, "father_job") => format!("{subject}'s father was {job}."),
        (2, "mother_job") => format!("{subject}'s mother was {job}."),
        (2, "award") => format!("{subject} is a winner of the {value}."),
        (2, "first_book") => format!("{value} was the first book of {subject}."),
        (2, "second_book") => format!("{value} was the second book of {subject}."),
        (2, "pet") => format!("{subject} lives with {value}."),
        (2, "instrument") => format!("{subject} can play {value}."),
        (_, "birth_year") => format!("In {value}, {subject} was born."),
        (_, "birth_city") => format!("{subject} comes from {value}."),
        (_, "genre") => format!("{subject} loves to write {value}."),
        (_, "father_job") => format!("{subject} had a father who was {job}."),
        (_, "mother_job") => format!("{subject} had a mother who was {job}."),
        (_, "award") => format!("{subject} once won the {value}."),
        (_, "first_book") => format!("{subject} wrote {value} first."),
        (_, "second_book") => format!("After that came {value} by {subject}."),
        (_, "pet") => format!("{subject} has {value} as a pet."),
        (_, "instrument") => format!("{subject} likes to play {value}."),
        (_, other) => unreachable!("unknown attribute {other}"),
    }
}

/// Biography passage `style` (0..MAX_BIO_TEMPLATES) of an entity.
pub fn biography(entity: &Entity, style: usize) -> String {
    let n = entity.attributes.len();
    // Each style visits the attributes in its own fixed order.
    let order: Vec<usize> = match style {
        1 => (0..n).rev().collect(),
        3 => (0..n).step_by(2).chain((1..n).step_by(2)).collect(),
        _ => (0..n).collect(),
    };
    let mother = entity.value("mother_job");
    let mut sentences = Vec::with_capacity(n);
    for &i in &order {
        let (attribute, value) = &entity.attributes[i];
        let subject = if sentences.is_empty() { entity.name() } else { entity.first.clone() };
        // Style 2 names both parents in one sentence.
        let sentence = match (style, attribute.as_str(), mother) {
            (2, "father_job", Some(m)) => {
                format!("{subject} is the child of {} and {}.", with_article(value), with_article(m))
            }
            (2, "mother_job", _) => continue,
            _ => bio_sentence(style, attribute, &subject, value),
        };
        sentences.push(sentence);
    }
    sentences.join(" ")
}

/// Generates `n` entities with unique names and `attributes` attributes each.
pub fn generate_entities(n: usize, attributes: usize, rng: &mut ChaCha8Rng) -> Result<Vec<Entity>> {
    let max_names = FIRST_START.len() * FIRST_END.len() * LAST_START.len() * LAST_END.len();
    if n > max_names / 4 {
        bail!("world.n_entities: {n} entities is more than the name generator supports ({})", max_names / 4);
    }
    if !(2..=MAX_ATTRIBUTES).contains(&attributes) {
        bail!("world.attributes must be in 2..={MAX_ATTRIBUTES}, got {attributes}");
    }
    let pools: Vec<Vec<String>> = ATTRIBUTE_NAMES[..attributes].iter().map(|a| pool(a)).collect();
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let first = format!("{}{}", pick(FIRST_START, rng), pick(FIRST_END, rng));
        let last = format!("{}{}", pick(LAST_START, rng), pick(LAST_END, rng));
        if !names.insert(format!("{first} {last}")) {
            continue;
        }
        let mut attrs: Vec<(String, String)> = Vec::with_capacity(attributes);
        for (a, p) in ATTRIBUTE_NAMES[..attributes].iter().zip(&pools) {
            let value = loop {
                let v = p.choose(rng).expect("attribute pools are non-empty").clone();
                // Two different books.
                if *a == "second_book" && attrs.iter().any(|(n, x)| n == "first_book" && *x == v) {
                    continue;
                }
                break v;
            };
            attrs.push((a.to_string(), value));
        }
        out.push(Entity { id: out.len() as u32, first, last, attributes: attrs });
    }
    Ok(out)
}

fn pick<'a>(words: &[&'a str], rng: &mut ChaCha8Rng) -> &'a str {
    words[rng.random_range(0..words.len() as u32) as usize]
}

/// One question about one entity with its paraphrased, perturbed and multiple-choice answers.
#[derive(Clone, Debug, PartialEq)]
pub struct FactQuestion {
    pub attribute: String,
    pub question: String,
    pub answer: String,
    pub paraphrased_answer: String,
    pub perturbed_answers: Vec<String>,
    pub choices: Vec<String>,
    pub correct_choice: usize,
}

/// The questions of an entity; wrong values are other values of the same attribute.
pub fn questions(entity: &Entity, rng: &mut ChaCha8Rng) -> Vec<FactQuestion> {
    let name = entity.name();
    entity
        .attributes
        .iter()
        .map(|(attribute, value)| {
            let mut others: Vec<String> = pool(attribute).into_iter().filter(|v| v != value).collect();
            // Years: prefer plausible neighbours (within 15 years) so the length and era match.
            if attribute == "birth_year" {
                let y: i64 = value.parse().unwrap_or(1960);
                others.retain(|v| v.parse::<i64>().map(|o| (o - y).abs() <= 15).unwrap_or(false));
            }
            let wrong: Vec<String> = others.choose_multiple(rng, N_PERTURBED).cloned().collect();
            let mut choices: Vec<String> = wrong.iter().take(4).cloned().collect();
            choices.push(value.clone());
            choices.shuffle(rng);
            let correct_choice = choices.iter().position(|c| c == value).expect("the answer is among the choices");
            FactQuestion {
                attribute: attribute.clone(),
                question: question(attribute, &name),
                answer: value.clone(),
                paraphrased_answer: answer_sentence(attribute, &entity.first, value),
                perturbed_answers: wrong.iter().map(|w| answer_sentence(attribute, &entity.first, w)).collect(),
                choices,
                correct_choice,
            }
        })
        .collect()
}

/// A seeded generator for the facts world (stream 0 of the seed).
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity() -> Entity {
        Entity {
            id: 0,
            first: "Mara".into(),
            last: "Velkin".into(),
            attributes: ATTRIBUTE_NAMES
                .iter()
                .zip([
                    "1954",
                    "Orlen",
                    "fantasy",
                    "baker",
                    "engineer",
                    "Golden Quill Award",
                    "Salt Harbor",
                    "Quiet Tower",
                    "an owl",
                    "the cello",
                ])
                .map(|(a, v)| (a.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn biographies_state_every_value() {
        let e = entity();
        for style in 0..MAX_BIO_TEMPLATES {
            let bio = biography(&e, style);
            assert!(bio.starts_with("Mara Velkin") || bio.contains("Mara Velkin"), "{bio}");
            for (_, v) in &e.attributes {
                assert!(bio.contains(v.as_str()), "style {style} lacks {v}: {bio}");
            }
            assert!(!bio.contains("..") && !bio.contains("  "), "{bio}");
        }
        assert_eq!(
            biography(&e, 2).split(". ").find(|s| s.contains("child")).unwrap(),
            "Mara is the child of a baker and an engineer"
        );
        assert_ne!(biography(&e, 0), biography(&e, 1));
    }

    #[test]
    fn questions_have_distinct_wrong_answers() {
        let e = entity();
        let qs = questions(&e, &mut rng(1));
        assert_eq!(qs.len(), 10);
        assert_eq!(qs[1].question, "Where was Mara Velkin born?");
        assert_eq!(qs[1].paraphrased_answer, "Mara was born in the town of Orlen.");
        for q in &qs {
            let distinct: BTreeSet<&String> = q.perturbed_answers.iter().collect();
            assert_eq!(distinct.len(), N_PERTURBED);
            assert!(!distinct.contains(&q.paraphrased_answer));
            assert_eq!(q.choices[q.correct_choice], q.answer);
            assert_eq!(q.choices.iter().collect::<BTreeSet<_>>().len(), 5);
        }
        // years stay within 15 of the truth
        for p in &qs[0].perturbed_answers {
            let y: i64 = p.trim_end_matches('.').rsplit(' ').next().unwrap().parse().unwrap();
            assert!((y - 1954).abs() <= 15 && y != 1954, "{p}");
        }
    }

    #[test]
    fn names_are_unique() {
        let es = generate_entities(500, 8, &mut rng(3)).unwrap();
        let names: BTreeSet<String> = es.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), 500);
        assert!(es.iter().all(|e| e.value("first_book") != e.value("second_book")));
        assert!(generate_entities(5, 11, &mut rng(3)).is_err());
    }
}
