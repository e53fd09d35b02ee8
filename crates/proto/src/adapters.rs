//! serde adapters (`#[serde(with = "...")]`) for the byte strings and text of the messages.
//!
//! Why they exist: serde's default `Vec<u8>` goes through `serialize_seq`, one call per byte,
//! which is slow for event values; and a default `String` or `Vec<u8>` deserializer may allocate
//! the length a peer claims before finding out that the bytes are not there. These adapters
//! serialize with `serialize_bytes` / `serialize_str` (on the wire: a length, then the bytes —
//! the same bytes a `Vec<u8>` would produce) and deserialize through the *borrowing* entry
//! points (`deserialize_bytes` / `deserialize_str`), so the decoder checks the length against
//! the bytes actually in the body first and allocates exactly what is copied.
//!
//! They are format-agnostic (self-describing formats such as JSON work too: a sequence of
//! numbers is accepted for bytes).

use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

/// Owned bytes that deserialize through `deserialize_bytes`.
struct ByteBuf(Vec<u8>);

/// Borrowed bytes that serialize through `serialize_bytes`.
struct ByteSlice<'a>(&'a [u8]);

/// Owned text that deserializes through `deserialize_str`.
struct Text(String);

impl Serialize for ByteSlice<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = ByteBuf;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<ByteBuf, E> {
        Ok(ByteBuf(bytes.to_vec()))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<ByteBuf, E> {
        Ok(ByteBuf(bytes))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteBuf, E> {
        Ok(ByteBuf(text.as_bytes().to_vec()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
        // Self-describing formats only; cap the preallocation as serde does.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(ByteBuf(bytes))
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(ByteBufVisitor)
    }
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a UTF-8 string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text, E> {
        Ok(Text(text.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Text, E> {
        Ok(Text(text))
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

/// `bytes::Bytes` as one byte string. On the wire exactly what [`bytes`] (a `Vec<u8>`) writes.
/// Decoded inside [`with_shared_frame`], a value borrowed from the frame becomes a slice of the
/// frame's own buffer (no copy, no allocation); anywhere else it is copied.
pub(crate) mod shared_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &::bytes::Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<::bytes::Bytes, D::Error> {
        deserializer.deserialize_bytes(SharedBytesVisitor)
    }
}

std::thread_local! {
    /// The frame being decoded by [`with_shared_frame`] on this thread, if any.
    static SHARED_FRAME: std::cell::RefCell<Option<::bytes::Bytes>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `decode` with `frame` as the buffer that [`shared_bytes`] values borrowed from it are
/// sliced from. Restores the previous state even if `decode` panics.
pub(crate) fn with_shared_frame<T>(frame: &::bytes::Bytes, decode: impl FnOnce() -> T) -> T {
    struct Restore(Option<::bytes::Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SHARED_FRAME.with(|shared| *shared.borrow_mut() = previous);
        }
    }
    let previous = SHARED_FRAME.with(|shared| shared.borrow_mut().replace(frame.clone()));
    let _restore = Restore(previous);
    decode()
}

/// `bytes` as a slice of the shared frame if it lies inside it, else a copy.
fn shared_or_copied(bytes: &[u8]) -> ::bytes::Bytes {
    SHARED_FRAME.with(|shared| match &*shared.borrow() {
        Some(frame) if contains(frame, bytes) => frame.slice_ref(bytes),
        _ => ::bytes::Bytes::copy_from_slice(bytes),
    })
}

/// Whether `inner` lies within `outer`'s memory (what `Bytes::slice_ref` requires).
fn contains(outer: &[u8], inner: &[u8]) -> bool {
    let outer_start = outer.as_ptr() as usize;
    let inner_start = inner.as_ptr() as usize;
    inner.is_empty()
        || (inner_start >= outer_start && inner_start + inner.len() <= outer_start + outer.len())
}

struct SharedBytesVisitor;

impl<'de> Visitor<'de> for SharedBytesVisitor {
    type Value = ::bytes::Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_borrowed_bytes<E: serde::de::Error>(self, bytes: &'de [u8]) -> Result<Self::Value, E> {
        Ok(shared_or_copied(bytes))
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        Ok(::bytes::Bytes::copy_from_slice(bytes))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Self::Value, E> {
        Ok(::bytes::Bytes::from(bytes))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(::bytes::Bytes::copy_from_slice(text.as_bytes()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ByteBufVisitor
            .visit_seq(seq)
            .map(|ByteBuf(bytes)| ::bytes::Bytes::from(bytes))
    }
}

/// `Vec<u8>` as one byte string.
pub(crate) mod bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        ByteBuf::deserialize(deserializer).map(|ByteBuf(bytes)| bytes)
    }
}

/// `Option<Vec<u8>>` as an optional byte string.
pub(crate) mod option_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_some(&ByteSlice(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<ByteBuf>::deserialize(deserializer)?.map(|ByteBuf(bytes)| bytes))
    }
}

/// `String`, decoded without trusting its length.
pub(crate) mod text {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(value: &str, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<String, D::Error> {
        Text::deserialize(deserializer).map(|Text(text)| text)
    }
}

/// `Option<String>`, decoded without trusting its length.
pub(crate) mod option_text {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(text) => serializer.serialize_some(text.as_str()),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        Ok(Option::<Text>::deserialize(deserializer)?.map(|Text(text)| text))
    }
}

/// `Vec<String>`, each decoded without trusting its length.
pub(crate) mod texts {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &[String],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(value.len()))?;
        for text in value {
            seq.serialize_element(text.as_str())?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        let texts = Vec::<Text>::deserialize(deserializer)?;
        Ok(texts.into_iter().map(|Text(text)| text).collect())
    }
}

/// Event headers, `Vec<(String, Vec<u8>)>`: a sequence of (text, byte string) pairs.
pub(crate) mod headers {
    use super::*;

    struct Pair<'a>(&'a str, &'a [u8]);

    impl Serialize for Pair<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut tuple = serializer.serialize_tuple(2)?;
            tuple.serialize_element(self.0)?;
            tuple.serialize_element(&ByteSlice(self.1))?;
            tuple.end()
        }
    }

    pub(crate) fn serialize<S: Serializer>(
        value: &[(String, Vec<u8>)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(value.len()))?;
        for (name, bytes) in value {
            seq.serialize_element(&Pair(name, bytes))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
        let pairs = Vec::<(Text, ByteBuf)>::deserialize(deserializer)?;
        Ok(pairs
            .into_iter()
            .map(|(Text(name), ByteBuf(bytes))| (name, bytes))
            .collect())
    }
}
