//! Start times in file names.
//!
//! A pattern is strftime-like text matched against the whole file name (the part after the
//! last `/` or `\`), literal text case-insensitively (so `.wav` matches `.WAV`):
//!
//! | field | matches |
//! | --- | --- |
//! | `%Y` | four-digit year | `%y` | two-digit year, 20yy |
//! | `%m` `%d` `%H` `%M` `%S` | two-digit month, day, hour (00-23), minute, second |
//! | `%%` | a `%` | `*` | any text, possibly empty (a serial, a prefix, an extension) |
//!
//! followed by an optional `@OFFSET` saying the time is local at that offset (`@+10:00`,
//! `@-03:30`; `@Z` or nothing: UTC). Every field must be present once except `%S` (seconds
//! default to 0) and the year comes from `%Y` or `%y`. A match whose date or time is impossible
//! (month 13, 31 April, hour 24) is no match: a name that only looks like a date gives no time.
//!
//! Built in, tried after any `--time-pattern`s (which come first, in the order given):
//! SoundTrap `*.%y%m%d%H%M%S.*` (`5783.240701063000.wav`), AudioMoth and Wildlife Acoustics
//! `*%Y%m%d_%H%M%S.*` (`20240701_063000.WAV`, `SM4_20240701_063000.wav`), and ISO-like
//! `*%Y%m%dT%H%M%SZ*`, `*%Y-%m-%dT%H:%M:%SZ*`, `*%Y-%m-%dT%H-%M-%SZ*`. All built-ins read UTC:
//! SoundTrap and AudioMoth name files in UTC, ISO names say `Z`; Wildlife Acoustics recorders
//! name files in the time zone they were set to, which we take as UTC (give a pattern with an
//! offset, or re-read a folder at an offset, when they were set to local time).

use super::{CivilDateTime, RecordingTimeError, UtcOffset, UtcTime};

/// The longest name considered (longer names are not searched for times).
const MAX_NAME_CHARS: usize = 255;
/// The most `*` a pattern may hold (each can make matching try every position).
const MAX_WILDCARDS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Year4,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl Field {
    fn width(self) -> usize {
        match self {
            Field::Year4 => 4,
            _ => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Lowercase ASCII-folded literal text.
    Literal(String),
    Field(Field),
    Any,
}

/// A file-name time pattern with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimePattern {
    /// As given, without the offset (`*%Y%m%d_%H%M%S.wav`).
    pub text: String,
    tokens: Vec<Token>,
    pub offset: UtcOffset,
}

impl std::str::FromStr for TimePattern {
    type Err = RecordingTimeError;

    fn from_str(text: &str) -> Result<TimePattern, RecordingTimeError> {
        TimePattern::parse(text)
    }
}

impl TimePattern {
    /// `PATTERN[@OFFSET]`, e.g. `*%Y%m%d_%H%M%S.wav@+10:00`.
    pub fn parse(given: &str) -> Result<TimePattern, RecordingTimeError> {
        let bad = |reason: &str| RecordingTimeError::BadPattern { pattern: given.to_string(), reason: reason.into() };
        let (text, offset) = match given.rsplit_once('@') {
            Some((text, offset)) => (text, UtcOffset::parse(offset)?),
            None => (given, UtcOffset::UTC),
        };
        let mut tokens: Vec<Token> = Vec::new();
        let mut chars = text.chars();
        let mut literal = String::new();
        let flush = |literal: &mut String, tokens: &mut Vec<Token>| {
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(literal)));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let field = match chars.next() {
                        Some('%') => {
                            literal.push('%');
                            continue;
                        }
                        Some('Y') => Field::Year4,
                        Some('y') => Field::Year2,
                        Some('m') => Field::Month,
                        Some('d') => Field::Day,
                        Some('H') => Field::Hour,
                        Some('M') => Field::Minute,
                        Some('S') => Field::Second,
                        Some(other) => return Err(bad(&format!("unknown field %{other} (use %Y %y %m %d %H %M %S)"))),
                        None => return Err(bad("a lone % at the end (write %% for a percent sign)")),
                    };
                    flush(&mut literal, &mut tokens);
                    tokens.push(Token::Field(field));
                }
                '*' => {
                    flush(&mut literal, &mut tokens);
                    if tokens.last() != Some(&Token::Any) {
                        tokens.push(Token::Any);
                    }
                }
                other => literal.push(other.to_ascii_lowercase()),
            }
        }
        flush(&mut literal, &mut tokens);
        let count = |wanted: &[Field]| {
            tokens.iter().filter(|token| matches!(token, Token::Field(field) if wanted.contains(field))).count()
        };
        if count(&[Field::Year4, Field::Year2]) != 1 {
            return Err(bad("needs exactly one year field (%Y or %y)"));
        }
        for (field, name) in [(Field::Month, "%m"), (Field::Day, "%d"), (Field::Hour, "%H"), (Field::Minute, "%M")] {
            if count(&[field]) != 1 {
                return Err(bad(&format!("needs exactly one {name}")));
            }
        }
        if count(&[Field::Second]) > 1 {
            return Err(bad("has %S more than once"));
        }
        if tokens.iter().filter(|token| **token == Token::Any).count() > MAX_WILDCARDS {
            return Err(bad(&format!("has more than {MAX_WILDCARDS} wildcards")));
        }
        Ok(TimePattern { text: text.to_string(), tokens, offset })
    }

    /// The local time this pattern reads from `name`, when it matches with a valid date.
    pub fn match_name(&self, name: &str) -> Option<CivilDateTime> {
        let name = name.to_ascii_lowercase();
        let mut fields = [None; 6];
        match_tokens(&self.tokens, name.as_bytes(), &mut fields)
    }
}

fn field_index(field: Field) -> usize {
    match field {
        Field::Year4 | Field::Year2 => 0,
        Field::Month => 1,
        Field::Day => 2,
        Field::Hour => 3,
        Field::Minute => 4,
        Field::Second => 5,
    }
}

fn field_value(field: Field, digits: &[u8]) -> Option<u32> {
    if digits.len() != field.width() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits.iter().fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
    let valid = match field {
        Field::Year4 => (1900..=2199).contains(&value),
        Field::Year2 => true,
        Field::Month => (1..=12).contains(&value),
        Field::Day => (1..=31).contains(&value),
        Field::Hour => value < 24,
        Field::Minute | Field::Second => value < 60,
    };
    valid.then_some(if field == Field::Year2 { 2000 + value } else { value })
}

/// Backtracking match; at the end, the fields must make a real date and time.
fn match_tokens(tokens: &[Token], name: &[u8], fields: &mut [Option<u32>; 6]) -> Option<CivilDateTime> {
    let Some((first, rest)) = tokens.split_first() else {
        if !name.is_empty() {
            return None;
        }
        let [Some(year), Some(month), Some(day), Some(hour), Some(minute), second] = *fields else {
            return None;
        };
        return CivilDateTime::new(year as i32, month, day, hour, minute, second.unwrap_or(0));
    };
    match first {
        Token::Literal(text) => {
            let tail = name.strip_prefix(text.as_bytes())?;
            match_tokens(rest, tail, fields)
        }
        Token::Field(field) => {
            let width = field.width();
            let value = field_value(*field, name.get(..width)?)?;
            let index = field_index(*field);
            let saved = fields[index];
            fields[index] = Some(value);
            let found = match_tokens(rest, &name[width..], fields);
            fields[index] = saved;
            found
        }
        Token::Any => (0..=name.len()).find_map(|skip| match_tokens(rest, &name[skip..], fields)),
    }
}

/// The built-in recorder families, tried after the user's patterns.
pub fn builtin_patterns() -> Vec<TimePattern> {
    [
        "*.%y%m%d%H%M%S.*",
        "*%Y%m%d_%H%M%S.*",
        "*%Y%m%dT%H%M%SZ*",
        "*%Y-%m-%dT%H:%M:%SZ*",
        "*%Y-%m-%dT%H-%M-%SZ*",
        "*%Y-%m-%dT%H%M%SZ*",
    ]
    .iter()
    .filter_map(|text| TimePattern::parse(text).ok())
    .collect()
}

/// A time read from a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTime {
    pub recorded_at: UtcTime,
    /// The pattern that matched (without its offset).
    pub pattern: String,
    /// The offset the local time was read at.
    pub offset: UtcOffset,
}

/// The start time in `file_name` (folders ignored): the first of `patterns`, then the built-in
/// families, that matches with a valid date. `offset_override` replaces the pattern's offset.
pub fn time_from_file_name(
    file_name: &str,
    patterns: &[TimePattern],
    offset_override: Option<UtcOffset>,
) -> Option<NameTime> {
    let name = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    if name.chars().count() > MAX_NAME_CHARS {
        return None;
    }
    let builtins = builtin_patterns();
    patterns.iter().chain(builtins.iter()).find_map(|pattern| {
        let civil = pattern.match_name(name)?;
        let offset = offset_override.unwrap_or(pattern.offset);
        Some(NameTime { recorded_at: civil.at_offset(offset), pattern: pattern.text.clone(), offset })
    })
}
