//! Reads a SnapDeals vanilla partition proof in bincode form into struct shapes declared as read
//! from the sources, so serde_derive itself decides the field order, the enum variant numbering
//! and what is skipped:
//! - rust-fil-proofs 87348a74 storage-proofs-update/src/vanilla.rs: PartitionProof, ChallengeProof;
//! - storage-proofs-core/src/merkle/proof.rs: MerkleProof, ProofData, Single/Sub/TopProof,
//!   InclusionPath, PathElement (`_arity` is `#[serde(skip)]`);
//! - filecoin-hashers: PoseidonDomain(<Fr as PrimeField>::Repr = [u8; 32]), Sha256Domain([u8; 32]).
//! Debian packages no bincode crate, so the deserializer below is this harness's own, from the
//! format bincode 1's `deserialize()` documents (little-endian, fixed-width integers, u64
//! sequence lengths, u32 enum variant index, tuples and structs as their fields back to back).
//! It only knows those primitive rules; the layout comes from the derives.
//! Usage: partition-proof-harness FILE -> the proof as serde_json on stdout, or exit 1.
use serde::de::{self, DeserializeSeed, EnumAccess, IntoDeserializer, SeqAccess, VariantAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;

#[derive(Serialize, Deserialize)]
struct PoseidonDomain([u8; 32]);

#[derive(Serialize, Deserialize)]
struct Sha256Domain([u8; 32]);

#[derive(Serialize, Deserialize)]
struct PathElement<D> {
    hashes: Vec<D>,
    index: usize,
    #[serde(skip)]
    _arity: PhantomData<u8>,
}

#[derive(Serialize, Deserialize)]
struct InclusionPath<D> {
    path: Vec<PathElement<D>>,
}

#[derive(Serialize, Deserialize)]
struct SingleProof<D> {
    root: D,
    leaf: D,
    path: InclusionPath<D>,
}

#[derive(Serialize, Deserialize)]
struct SubProof<D> {
    base_proof: InclusionPath<D>,
    sub_proof: InclusionPath<D>,
    root: D,
    leaf: D,
}

#[derive(Serialize, Deserialize)]
struct TopProof<D> {
    base_proof: InclusionPath<D>,
    sub_proof: InclusionPath<D>,
    top_proof: InclusionPath<D>,
    root: D,
    leaf: D,
}

#[derive(Serialize, Deserialize)]
enum ProofData<D> {
    Single(SingleProof<D>),
    Sub(SubProof<D>),
    Top(TopProof<D>),
}

#[derive(Serialize, Deserialize)]
struct MerkleProof<D> {
    data: ProofData<D>,
}

#[derive(Serialize, Deserialize)]
struct ChallengeProof {
    proof_r_old: MerkleProof<PoseidonDomain>,
    proof_d_new: MerkleProof<Sha256Domain>,
    proof_r_new: MerkleProof<PoseidonDomain>,
}

#[derive(Serialize, Deserialize)]
struct PartitionProof {
    comm_c: PoseidonDomain,
    apex_leafs: Vec<Sha256Domain>,
    challenge_proofs: Vec<ChallengeProof>,
}

// ------------------------------------------------------------------ bincode 1, fixint, reading

#[derive(Debug)]
struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

struct Bin<'de> {
    data: &'de [u8],
    pos: usize,
}

impl<'de> Bin<'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8], Error> {
        if self.data.len() - self.pos < n {
            return Err(Error(format!("unexpected end of input at byte {}", self.pos)));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

struct Counted<'a, 'de> {
    de: &'a mut Bin<'de>,
    left: usize,
}

impl<'a, 'de> SeqAccess<'de> for Counted<'a, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'a, 'de> de::Deserializer<'de> for &'a mut Bin<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(Error("bincode is not self-describing: a type this harness does not declare".into()))
    }

    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u8(self.take(1)?[0])
    }

    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u32(self.u32()?)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u64(self.u64()?)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let left = self.u64()? as usize;
        v.visit_seq(Counted { de: self, left })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, Error> {
        v.visit_seq(Counted { de: self, left: len })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, len: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(fields.len(), v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_enum(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u16 u128 f32 f64 char str string bytes byte_buf option
        unit_struct map identifier ignored_any
    }
}

impl<'a, 'de> EnumAccess<'de> for &'a mut Bin<'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let index = self.u32()?;
        let value = seed.deserialize(index.into_deserializer())?;
        Ok((value, self))
    }
}

impl<'a, 'de> VariantAccess<'de> for &'a mut Bin<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_tuple(self, len, v)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], v: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_tuple(self, fields.len(), v)
    }
}

fn read(data: &[u8]) -> Result<PartitionProof, Error> {
    let mut de = Bin { data, pos: 0 };
    let proof = PartitionProof::deserialize(&mut de)?;
    if de.pos != data.len() {
        return Err(Error(format!("{} bytes after the proof", data.len() - de.pos)));
    }
    Ok(proof)
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: partition-proof-harness FILE");
    let data = std::fs::read(path).expect("read the file");
    match read(&data) {
        Ok(proof) => println!("{}", serde_json::to_string(&proof).unwrap()),
        Err(e) => {
            eprintln!("not a PartitionProof: {e}");
            std::process::exit(1);
        }
    }
}
