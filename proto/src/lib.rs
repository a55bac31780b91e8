//! The gRPC contracts between Blob's services (`proto/blob/*/v1`), generated once for everyone.
//!
//! Each package is a module named after it: [`stt::v1`], [`llm::v1`], [`session::v1`].
//! [`FILE_DESCRIPTOR_SET`] feeds server reflection.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// Speech-to-text: one bidirectional stream per voice connection.
pub mod stt {
    /// Version 1 of the contract.
    pub mod v1 {
        tonic::include_proto!("blob.stt.v1");
    }
}

/// Blob's replies, streamed.
pub mod llm {
    /// Version 1 of the contract.
    pub mod v1 {
        tonic::include_proto!("blob.llm.v1");
    }
}

/// Users, children, sessions and conversations.
pub mod session {
    /// Version 1 of the contract.
    pub mod v1 {
        tonic::include_proto!("blob.session.v1");
    }
}

/// Encoded descriptors of every Blob service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("blob_descriptor");
