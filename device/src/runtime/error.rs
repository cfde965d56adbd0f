use edgevlm_shared::bundle::BundleError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{origin}: graph `{graph}` does not load: {reason}")]
    Graph {
        origin: String,
        graph: String,
        reason: String,
    },
    #[error("running `{graph}`: {reason}")]
    Run { graph: String, reason: String },
    #[error(transparent)]
    Shared(#[from] edgevlm_shared::Error),
    #[error(transparent)]
    Memory(#[from] edgevlm_shared::caption::MemoryError),
    #[error("{file}: not a tokenizer: {reason}")]
    Tokenizer { file: String, reason: String },
    #[error("this bundle does not answer questions (it has no VQA graph)")]
    NoVqa,
    #[error("self-test failed: {0}")]
    SelfTest(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
