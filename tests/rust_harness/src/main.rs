//! Round-trips a C1 output through struct shapes declared as read from the sources, so serde
//! itself says whether our JSON is what rust-fil-proofs would parse:
//! - filecoin-proofs-api 0e64ce8d src/seal.rs: SealCommitPhase1Output, VanillaSealProof;
//! - rust-fil-proofs 87348a74 storage-proofs-porep/src/stacked/vanilla/{params,column_proof,
//!   column,labeling_proof,encoding_proof}.rs and storage-proofs-core/src/merkle/proof.rs;
//! - filecoin-hashers: PoseidonDomain(<Fr as PrimeField>::Repr = [u8; 32]), Sha256Domain([u8; 32]).
//! Only the 2KiB variant's tree shape (arity 8, no sub / top tree) is declared in full; the
//! generics of the originals are written out as concrete types.
//! Usage: c1out-harness FILE  -> prints the re-serialized JSON on stdout.
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

#[derive(Serialize, Deserialize)]
struct PoseidonDomain([u8; 32]);

#[derive(Serialize, Deserialize)]
struct Sha256Domain([u8; 32]);

#[allow(non_camel_case_types)]
#[derive(Serialize, Deserialize)]
enum RegisteredSealProof {
    StackedDrg2KiBV1,
    StackedDrg8MiBV1,
    StackedDrg512MiBV1,
    StackedDrg32GiBV1,
    StackedDrg64GiBV1,
    StackedDrg2KiBV1_1,
    StackedDrg8MiBV1_1,
    StackedDrg512MiBV1_1,
    StackedDrg32GiBV1_1,
    StackedDrg64GiBV1_1,
}

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
struct Column {
    index: u32,
    rows: Vec<PoseidonDomain>,
    _h: PhantomData<u8>,
}

#[derive(Serialize, Deserialize)]
struct ColumnProof {
    column: Column,
    inclusion_proof: MerkleProof<PoseidonDomain>,
}

#[derive(Serialize, Deserialize)]
struct ReplicaColumnProof {
    c_x: ColumnProof,
    drg_parents: Vec<ColumnProof>,
    exp_parents: Vec<ColumnProof>,
}

#[derive(Serialize, Deserialize)]
struct LabelingProof {
    parents: Vec<PoseidonDomain>,
    layer_index: u32,
    node: u64,
    #[serde(skip)]
    _h: PhantomData<u8>,
}

#[derive(Serialize, Deserialize)]
struct EncodingProof {
    parents: Vec<PoseidonDomain>,
    layer_index: u32,
    node: u64,
    #[serde(skip)]
    _h: PhantomData<u8>,
}

#[derive(Serialize, Deserialize)]
struct Proof {
    comm_d_proofs: MerkleProof<Sha256Domain>,
    comm_r_last_proof: MerkleProof<PoseidonDomain>,
    replica_column_proofs: ReplicaColumnProof,
    labeling_proofs: Vec<LabelingProof>,
    encoding_proof: EncodingProof,
}

#[derive(Serialize, Deserialize)]
enum VanillaSealProof {
    StackedDrg2KiBV1(Vec<Vec<Proof>>),
    StackedDrg8MiBV1(Vec<Vec<Proof>>),
    StackedDrg512MiBV1(Vec<Vec<Proof>>),
    StackedDrg32GiBV1(Vec<Vec<Proof>>),
    StackedDrg64GiBV1(Vec<Vec<Proof>>),
}

#[derive(Serialize, Deserialize)]
struct SealCommitPhase1Output {
    registered_proof: RegisteredSealProof,
    vanilla_proofs: VanillaSealProof,
    comm_r: [u8; 32],
    comm_d: [u8; 32],
    replica_id: PoseidonDomain,
    seed: [u8; 32],
    ticket: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct SealCommitPhase2Output {
    proof: Vec<u8>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--c2-output" {
        // a c2 processor's answer output: SealCommitPhase2Output
        let out: SealCommitPhase2Output = serde_json::from_str(&args[2]).expect("SealCommitPhase2Output");
        println!("{}", serde_json::to_string(&out).unwrap());
        return;
    }
    let path = args.get(1).expect("usage: c1out-harness FILE | --c2-output JSON");
    let text = std::fs::read_to_string(path).expect("read the file");
    let c1: SealCommitPhase1Output = match serde_json::from_str(&text) {
        Ok(c1) => c1,
        Err(e) => {
            eprintln!("not a SealCommitPhase1Output: {e}");
            std::process::exit(1);
        }
    };
    println!("{}", serde_json::to_string(&c1).unwrap());
}
