//! The key tree of a spec, derived from the serde structs themselves (no hand-kept list), and a
//! checker that walks a parsed TOML table against it before serde sees it: unknown keys (with the
//! closest valid key suggested) and wrong types (naming the key path and the expected type).
//!
//! The tree is traced by deserializing the type from a [`Tracer`], a deserializer that records what
//! each field asks for (`deserialize_struct` with its field names, `deserialize_f64`, a sequence…)
//! and feeds back a placeholder value, so that a field added to a struct is known here at once.

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// What a key holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A struct: only these keys are allowed.
    Table(Vec<&'static str>),
    /// A map with free keys; values at `path.*`.
    Map,
    /// An array; elements at `path[]`.
    Array,
    Str,
    UInt,
    Int,
    Float,
    Bool,
    /// Anything (e.g. a raw TOML table).
    Any,
}

impl Kind {
    pub fn expected(&self) -> &'static str {
        match self {
            Kind::Table(_) | Kind::Map => "a table",
            Kind::Array => "an array",
            Kind::Str => "a string",
            Kind::UInt => "a non-negative integer",
            Kind::Int => "an integer",
            Kind::Float => "a number",
            Kind::Bool => "a boolean (true or false)",
            Kind::Any => "any value",
        }
    }

    fn accepts(&self, v: &toml::Value) -> bool {
        use toml::Value as V;
        match (self, v) {
            (Kind::Any, _) => true,
            (Kind::Table(_) | Kind::Map, V::Table(_)) => true,
            (Kind::Array, V::Array(_)) => true,
            (Kind::Str, V::String(_)) => true,
            (Kind::UInt, V::Integer(i)) => *i >= 0,
            (Kind::Int, V::Integer(_)) => true,
            // serde's float visitors take integers too (`lr = 1`).
            (Kind::Float, V::Float(_) | V::Integer(_)) => true,
            (Kind::Bool, V::Boolean(_)) => true,
            _ => false,
        }
    }
}

/// Path → kind; the root is `""`.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    pub kinds: BTreeMap<String, Kind>,
}

/// A problem found in a table.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    Unknown { path: String, suggestion: Option<String>, valid: Vec<String> },
    WrongType { path: String, expected: &'static str, found: String },
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// A short description of a TOML value, e.g. `a string ("fast")`.
pub fn describe(v: &toml::Value) -> String {
    use toml::Value as V;
    let shown = match v {
        V::Datetime(d) => d.to_string(),
        _ => v.to_string(),
    };
    let shown = if shown.chars().count() > 40 { format!("{}…", shown.chars().take(40).collect::<String>()) } else { shown };
    let kind = match v {
        V::String(_) => "a string",
        V::Integer(i) if *i < 0 => "a negative integer",
        V::Integer(_) => "an integer",
        V::Float(_) => "a float",
        V::Boolean(_) => "a boolean",
        V::Datetime(_) => "a date",
        V::Array(_) => "an array",
        V::Table(_) => return "a table".to_string(),
    };
    format!("{kind} ({shown})")
}

impl Schema {
    /// The key tree of `T`. Fails only for serde shapes the tracer does not model (enums).
    pub fn of<T: DeserializeOwned>() -> Result<Schema, String> {
        let out = RefCell::new(BTreeMap::new());
        T::deserialize(Tracer { path: String::new(), out: &out }).map_err(|e| e.to_string())?;
        Ok(Schema { kinds: out.into_inner() })
    }

    /// Fields of the struct at `path`, if it is one.
    pub fn fields(&self, path: &str) -> Option<&[&'static str]> {
        match self.kinds.get(path) {
            Some(Kind::Table(f)) => Some(f),
            _ => None,
        }
    }

    /// Checks `table`, found at schema path `at` (`""` for the root), and returns the first
    /// problem in key order. Missing keys are not problems here (serde reports them; some fields
    /// have defaults). `shown` prefixes the paths in messages (e.g. `profiles.smoke`).
    pub fn check(&self, table: &toml::Table, at: &str, shown: &str) -> Option<Problem> {
        self.check_table(table, at, shown)
    }

    fn check_table(&self, table: &toml::Table, at: &str, shown: &str) -> Option<Problem> {
        let fields = self.fields(at)?;
        for (k, v) in table {
            let (path, shown_path) = (join(at, k), join(shown, k));
            if !fields.iter().any(|f| *f == k.as_str()) {
                return Some(Problem::Unknown {
                    suggestion: closest(k, fields).map(|c| join(shown, c)),
                    valid: fields.iter().map(|f| f.to_string()).collect(),
                    path: shown_path,
                });
            }
            if let Some(p) = self.check_value(v, &path, &shown_path) {
                return Some(p);
            }
        }
        None
    }

    fn check_value(&self, v: &toml::Value, path: &str, shown: &str) -> Option<Problem> {
        let kind = self.kinds.get(path)?;
        if !kind.accepts(v) {
            return Some(Problem::WrongType { path: shown.to_string(), expected: kind.expected(), found: describe(v) });
        }
        match (kind, v) {
            (Kind::Table(_), toml::Value::Table(t)) => self.check_table(t, path, shown),
            (Kind::Map, toml::Value::Table(t)) => {
                let inner = format!("{path}.*");
                t.iter().find_map(|(k, x)| self.check_value(x, &inner, &join(shown, k)))
            }
            (Kind::Array, toml::Value::Array(items)) => {
                let inner = format!("{path}[]");
                items.iter().enumerate().find_map(|(i, x)| self.check_value(x, &inner, &format!("{shown}[{i}]")))
            }
            _ => None,
        }
    }
}

/// The valid key closest to `key`: by edit distance when it is close, else an abbreviation
/// (`lr` for `learning_rate`: the candidate's letters in order, same first letter).
pub fn closest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let best = candidates
        .iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(key, c), *c))
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    if best.0 >= 0.5 {
        return Some(best.1);
    }
    let subsequence = |short: &str, long: &str| {
        let mut it = long.chars();
        short.chars().next() == long.chars().next() && short.chars().all(|c| it.any(|x| x == c))
    };
    candidates
        .iter()
        .filter(|c| c.len() >= 2 && (subsequence(c, key) || subsequence(key, c)))
        .min_by_key(|c| c.len())
        .copied()
}

// ---------------------------------------------------------------------------------------------
// The tracer
// ---------------------------------------------------------------------------------------------

struct Tracer<'a> {
    path: String,
    out: &'a RefCell<BTreeMap<String, Kind>>,
}

impl Tracer<'_> {
    fn record(&self, k: Kind) {
        self.out.borrow_mut().entry(self.path.clone()).or_insert(k);
    }

    fn at(&self, path: String) -> Self {
        Tracer { path, out: self.out }
    }
}

type Error = de::value::Error;

macro_rules! leaf {
    ($($method:ident => $kind:expr, $visit:ident($($val:expr)?);)*) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            self.record($kind);
            v.$visit($($val)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    leaf! {
        deserialize_bool => Kind::Bool, visit_bool(false);
        deserialize_i8 => Kind::Int, visit_i64(0);
        deserialize_i16 => Kind::Int, visit_i64(0);
        deserialize_i32 => Kind::Int, visit_i64(0);
        deserialize_i64 => Kind::Int, visit_i64(0);
        deserialize_u8 => Kind::UInt, visit_u64(0);
        deserialize_u16 => Kind::UInt, visit_u64(0);
        deserialize_u32 => Kind::UInt, visit_u64(0);
        deserialize_u64 => Kind::UInt, visit_u64(0);
        deserialize_f32 => Kind::Float, visit_f64(0.0);
        deserialize_f64 => Kind::Float, visit_f64(0.0);
        deserialize_char => Kind::Str, visit_char('x');
        deserialize_str => Kind::Str, visit_str("");
        deserialize_string => Kind::Str, visit_str("");
        deserialize_any => Kind::Any, visit_str("");
        deserialize_bytes => Kind::Any, visit_bytes(&[]);
        deserialize_byte_buf => Kind::Any, visit_bytes(&[]);
        deserialize_unit => Kind::Any, visit_unit();
        deserialize_identifier => Kind::Str, visit_str("");
        deserialize_ignored_any => Kind::Any, visit_unit();
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, Error> {
        self.deserialize_unit(v)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.record(Kind::Array);
        let inner = self.at(format!("{}[]", self.path));
        v.visit_seq(Elements { tracer: Some(inner), left: 1 })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, Error> {
        self.record(Kind::Array);
        let inner = self.at(format!("{}[]", self.path));
        v.visit_seq(Elements { tracer: Some(inner), left: len })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, len: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, v)
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.record(Kind::Map);
        let inner = self.at(format!("{}.*", self.path));
        v.visit_map(Entries { keys: vec!["*"], values: vec![inner], next: 0 })
    }
    fn deserialize_struct<V: Visitor<'de>>(self, _: &'static str, fields: &'static [&'static str], v: V) -> Result<V::Value, Error> {
        self.record(Kind::Table(fields.to_vec()));
        let values = fields.iter().map(|f| self.at(join(&self.path, f))).collect();
        v.visit_map(Entries { keys: fields.to_vec(), values, next: 0 })
    }
    /// Unit-variant enums (`arch = "llama"`) are strings in TOML; the first variant stands in.
    fn deserialize_enum<V: Visitor<'de>>(self, name: &'static str, variants: &'static [&'static str], v: V) -> Result<V::Value, Error> {
        let first = variants
            .first()
            .ok_or_else(|| de::Error::custom(format!("schema tracer: enum `{name}` at `{}` has no variants", self.path)))?;
        self.record(Kind::Str);
        v.visit_enum(IntoDeserializer::<Error>::into_deserializer(*first))
    }
}

struct Elements<'a> {
    tracer: Option<Tracer<'a>>,
    left: usize,
}

impl<'de, 'a> SeqAccess<'de> for Elements<'a> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let t = self.tracer.as_ref().expect("tracer present while elements are left");
        seed.deserialize(t.at(t.path.clone())).map(Some)
    }
}

struct Entries<'a> {
    keys: Vec<&'static str>,
    values: Vec<Tracer<'a>>,
    next: usize,
}

impl<'de, 'a> MapAccess<'de> for Entries<'a> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.keys.get(self.next) {
            Some(k) => seed.deserialize(<&str as IntoDeserializer<'de, Error>>::into_deserializer(*k)).map(Some),
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let t = &self.values[self.next];
        self.next += 1;
        seed.deserialize(t.at(t.path.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        lr: f64,
        steps: usize,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        seeds: Vec<u64>,
        split: BTreeMap<String, f64>,
        ppo: Inner,
        on: bool,
    }

    #[test]
    fn traces_the_key_tree() {
        let s = Schema::of::<Outer>().unwrap();
        assert_eq!(s.fields(""), Some(&["name", "seeds", "split", "ppo", "on"][..]));
        assert_eq!(s.kinds["seeds"], Kind::Array);
        assert_eq!(s.kinds["seeds[]"], Kind::UInt);
        assert_eq!(s.kinds["split"], Kind::Map);
        assert_eq!(s.kinds["split.*"], Kind::Float);
        assert_eq!(s.fields("ppo"), Some(&["lr", "steps"][..]));
        assert_eq!(s.kinds["ppo.steps"], Kind::UInt);
    }

    #[test]
    fn finds_unknown_keys_and_wrong_types() {
        let s = Schema::of::<Outer>().unwrap();
        let check = |src: &str| s.check(&toml::from_str(src).unwrap(), "", "");
        assert_eq!(check("name = \"x\"\n[ppo]\nlr = 1\nsteps = 2"), None);
        match check("[ppo]\nlearning_rate = 1e-3") {
            Some(Problem::Unknown { path, suggestion, .. }) => {
                assert_eq!(path, "ppo.learning_rate");
                assert_eq!(suggestion.as_deref(), Some("ppo.lr"));
            }
            other => panic!("{other:?}"),
        }
        match check("[ppo]\nstep = 1") {
            Some(Problem::Unknown { suggestion, .. }) => assert_eq!(suggestion.as_deref(), Some("ppo.steps")),
            other => panic!("{other:?}"),
        }
        match check("[pp0]\nsteps = 1") {
            Some(Problem::Unknown { path, suggestion, .. }) => {
                assert_eq!((path.as_str(), suggestion.as_deref()), ("pp0", Some("ppo")));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(check("[ppo]\nlr = \"fast\""), Some(Problem::WrongType { path, expected: "a number", .. }) if path == "ppo.lr"));
        assert!(matches!(check("seeds = [1, -2]"), Some(Problem::WrongType { path, .. }) if path == "seeds[1]"));
        assert!(matches!(check("split = { a = \"x\" }"), Some(Problem::WrongType { path, .. }) if path == "split.a"));
        assert!(matches!(check("on = \"yes\""), Some(Problem::WrongType { path, .. }) if path == "on"));
        assert!(matches!(check("ppo = 3"), Some(Problem::WrongType { path, expected: "a table", .. }) if path == "ppo"));
        // A partial table (a profile) at a sub-path, shown with its own prefix.
        let t: toml::Table = toml::from_str("stepz = 1").unwrap();
        match s.check(&t, "ppo", "profiles.smoke.ppo") {
            Some(Problem::Unknown { path, suggestion, .. }) => {
                assert_eq!(path, "profiles.smoke.ppo.stepz");
                assert_eq!(suggestion.as_deref(), Some("profiles.smoke.ppo.steps"));
            }
            other => panic!("{other:?}"),
        }
    }
}
