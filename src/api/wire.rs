//! How the node reads screening requests off the wire.
//!
//! `cix.v1.Screening` is served by a service defined in `build.rs` with the
//! same package, names and method paths as `proto/cix/v1/screening.proto`
//! (so clients, reflection and health see no difference), whose `Match` and
//! `MatchStream` decode a `cix.v1.MatchRequest` into [`MatchRequestView`]:
//! the same fields under the same tags and wire types, with each
//! identifier's value a [`Bytes`] slice of the received message instead of
//! a `String` of its own. Bulk screening decodes millions of identifiers a
//! second: decoding with a `String` per identifier (allocation, copy, free)
//! took about a fifth of the node's time in a `MatchStream` profile, the
//! view about a tenth (docs/BENCHMARKS.md). The proto keeps `string` for
//! every client; values are checked to be UTF-8 here, as prost checks a
//! `string` field, and a request with one that is not answers
//! INVALID_ARGUMENT naming the item (prost answered INTERNAL).

use bytes::{Buf, Bytes};
use prost::Message;
use tonic::{
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
    Status,
};
use tonic_prost::ProstEncoder;

use crate::{
    ident::{Kind, Reason},
    proto,
};

#[allow(clippy::all, missing_docs)]
mod service {
    tonic::include_proto!("cix.v1.Screening");
}

pub use service::screening_server;

/// `cix.v1.MatchRequest` as the node reads it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MatchRequestView {
    #[prost(message, repeated, tag = "1")]
    pub identifiers: Vec<IdentifierView>,
}

/// `cix.v1.Identifier` with its value borrowed from the message buffer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdentifierView {
    #[prost(enumeration = "crate::proto::Kind", tag = "1")]
    pub kind: i32,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// The codec of `Match` and `MatchStream`: requests read as
/// [`MatchRequestView`]s, answers written by prost as the proto's
/// `MatchResponse`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewCodec;

impl Codec for ViewCodec {
    type Encode = proto::MatchResponse;
    type Decode = MatchRequestView;
    type Encoder = ProstEncoder<proto::MatchResponse>;
    type Decoder = ViewDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ViewDecoder
    }
}

/// Takes the whole received message as one [`Bytes`] (a slice of tonic's
/// buffer, no copy) and decodes the view from it: prost reads a contiguous
/// `Bytes` with less work per field than tonic's buffer, and each value is
/// then a slice of that one message.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewDecoder;

impl Decoder for ViewDecoder {
    type Item = MatchRequestView;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<MatchRequestView>, Status> {
        let message = buf.copy_to_bytes(buf.remaining());
        // A message that is not protobuf is INTERNAL, as prost's own codec
        // answers (gRPC's status code guide).
        MatchRequestView::decode(message)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

impl MatchRequestView {
    /// The identifiers as (kind, value) pairs for the engine, once every
    /// value is checked to be UTF-8 (`string` in the proto): a value that is
    /// not refuses the request, naming the item.
    pub fn items(
        &self,
    ) -> Result<impl ExactSizeIterator<Item = (Result<Kind, Reason>, &[u8])>, Status> {
        if let Some(i) = self
            .identifiers
            .iter()
            .position(|id| !id.value.is_ascii() && std::str::from_utf8(&id.value).is_err())
        {
            return Err(Status::invalid_argument(format!(
                "identifiers[{i}].value: must be UTF-8 text"
            )));
        }
        Ok(self
            .identifiers
            .iter()
            .map(|id| (super::convert::kind(id.kind), &id.value[..])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The view reads exactly what the proto's own message writes, unknown
    /// kinds and empty values included, and writes what the proto reads.
    #[test]
    fn the_view_has_the_wire_format_of_match_request() {
        let req = proto::MatchRequest {
            identifiers: vec![
                proto::Identifier {
                    kind: proto::Kind::Iban as i32,
                    value: "GB82 WEST 1234 5698 7654 32".into(),
                },
                proto::Identifier {
                    kind: proto::Kind::Email as i32,
                    value: "Payer.Example@Mail.Example".into(),
                },
                proto::Identifier {
                    kind: 99,
                    value: "x".into(),
                },
                proto::Identifier {
                    kind: proto::Kind::Domain as i32,
                    value: String::new(),
                },
                proto::Identifier::default(),
            ],
        };
        let wire = Bytes::from(req.encode_to_vec());
        let view = MatchRequestView::decode(wire.clone()).unwrap();
        assert_eq!(view.identifiers.len(), req.identifiers.len());
        for (v, i) in view.identifiers.iter().zip(&req.identifiers) {
            assert_eq!((v.kind, &v.value[..]), (i.kind, i.value.as_bytes()));
        }
        assert_eq!(view.encode_to_vec(), wire);
        assert_eq!(proto::MatchRequest::decode(wire).unwrap(), req);

        let items: Vec<_> = view.items().unwrap().collect();
        assert_eq!(
            items[0],
            (Ok(Kind::Iban), &b"GB82 WEST 1234 5698 7654 32"[..])
        );
        assert_eq!(items[2].0, Err(Reason::Kind));
        assert_eq!(items[4], (Err(Reason::Kind), &b""[..]));
    }

    /// The service served is the proto's: if `screening.proto` gains or
    /// changes a method, `build.rs` must follow, and this says so.
    #[test]
    fn the_served_service_has_the_methods_of_the_proto() {
        let fds = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        let service = fds
            .file
            .iter()
            .filter(|f| f.package() == "cix.v1")
            .flat_map(|f| &f.service)
            .find(|s| s.name() == "Screening")
            .expect("cix.v1.Screening in the descriptor set");
        let mut methods: Vec<_> = service
            .method
            .iter()
            .map(|m| {
                (
                    m.name(),
                    m.input_type(),
                    m.client_streaming(),
                    m.server_streaming(),
                )
            })
            .collect();
        methods.sort();
        // As defined in build.rs (MatchRequestView reads cix.v1.MatchRequest).
        assert_eq!(
            methods,
            [
                ("Match", ".cix.v1.MatchRequest", false, false),
                ("MatchRemote", ".cix.v1.MatchRemoteRequest", false, false),
                ("MatchStream", ".cix.v1.MatchRequest", true, true),
                ("MatchTokens", ".cix.v1.MatchTokensRequest", true, true),
            ]
        );
        assert!(service
            .method
            .iter()
            .all(|m| m.output_type() == ".cix.v1.MatchResponse"));
        assert_eq!(
            <screening_server::ScreeningServer<()> as tonic::server::NamedService>::NAME,
            "cix.v1.Screening"
        );
    }

    #[test]
    fn a_value_that_is_not_utf8_refuses_the_request_naming_the_item() {
        let view = MatchRequestView {
            identifiers: vec![
                IdentifierView {
                    kind: proto::Kind::Email as i32,
                    value: Bytes::from_static(b"a@b.example"),
                },
                IdentifierView {
                    kind: proto::Kind::Email as i32,
                    value: Bytes::from_static(b"a\xc3@b.example"),
                },
            ],
        };
        let e = view.items().err().unwrap();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(e.message(), "identifiers[1].value: must be UTF-8 text");
    }
}
