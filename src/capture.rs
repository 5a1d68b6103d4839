//! Opt-in capture of the peer listener's gRPC traffic, for audits and the
//! leak tests: with the environment variable `CIX_CAPTURE_PEER_MESSAGES` set
//! to a directory, every request and response body frame the peer listener
//! receives or sends (after TLS, i.e. the gRPC messages themselves) is
//! appended to `<dir>/<node id>.peer-grpc.bin`, each frame after a one-line
//! header naming the method and direction.
//!
//! Captured on every node's peer listener, this sees every message exchanged
//! between nodes: each is either a request some node received or a response
//! some node sent. The capture holds what peers exchange (tokens, signed
//! batches, trust lists), never more; it is off unless the variable is set,
//! and the node says loudly at start when it is on.

use std::{
    fs::{File, OpenOptions},
    future::Future,
    io::Write,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use parking_lot::Mutex;
use tonic::body::Body;
use tower::{Layer, Service};

/// The environment variable naming the capture directory.
pub const ENV: &str = "CIX_CAPTURE_PEER_MESSAGES";

type Sink = Arc<Mutex<File>>;

/// Tower layer for the peer listener; passes everything through untouched
/// when capture is off.
#[derive(Clone, Default)]
pub struct CaptureLayer {
    sink: Option<Sink>,
}

impl CaptureLayer {
    /// Capture as the environment says (off when `CIX_CAPTURE_PEER_MESSAGES`
    /// is unset or empty).
    pub fn from_env(node_id: &str) -> std::io::Result<CaptureLayer> {
        match std::env::var_os(ENV).filter(|d| !d.is_empty()) {
            None => Ok(CaptureLayer::default()),
            Some(dir) => CaptureLayer::to_dir(Path::new(&dir), node_id),
        }
    }

    /// Capture to `<dir>/<node_id>.peer-grpc.bin`, creating `dir` if need be
    /// and appending to the file if it exists.
    pub fn to_dir(dir: &Path, node_id: &str) -> std::io::Result<CaptureLayer> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{node_id}.peer-grpc.bin"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        tracing::warn!(path = %path.display(), "capturing every gRPC message of the peer listener ({ENV} is set)");
        Ok(CaptureLayer {
            sink: Some(Arc::new(Mutex::new(file))),
        })
    }
}

impl<S> Layer<S> for CaptureLayer {
    type Service = Capture<S>;

    fn layer(&self, inner: S) -> Capture<S> {
        Capture {
            inner,
            sink: self.sink.clone(),
        }
    }
}

/// The service [`CaptureLayer`] wraps around the peer listener's: copies
/// request and response body frames to the capture file, if capture is on.
#[derive(Clone)]
pub struct Capture<S> {
    inner: S,
    sink: Option<Sink>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<http::Request<Body>> for Capture<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let Some(sink) = self.sink.clone() else {
            return Box::pin(self.inner.call(req));
        };
        let path = req.uri().path().to_string();
        let tee = |body: Body, label: String, sink: Sink| {
            Body::new(Tee {
                inner: body,
                sink,
                label,
            })
        };
        let req = req.map(|b| tee(b, format!("request {path}"), sink.clone()));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|b| tee(b, format!("response {path}"), sink)))
        })
    }
}

/// A body that copies each data frame to the sink as it passes.
struct Tee {
    inner: Body,
    sink: Sink,
    label: String,
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &r {
            if let Some(data) = frame.data_ref() {
                let mut f = this.sink.lock();
                let _ = writeln!(f, "\n--- {} ({} bytes)", this.label, data.len());
                let _ = f.write_all(data);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
