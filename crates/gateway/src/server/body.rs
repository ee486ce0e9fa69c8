//! Body types shared by the server and the upstream client.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response llmux writes: a fixed buffer or a stream relayed from an upstream.
pub type RespBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> RespBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Why [`read_whole`] stopped.
#[derive(Debug)]
pub enum ReadError {
    /// More than the limit.
    TooLarge,
    /// The body itself failed (connection lost, malformed chunking).
    Body(BoxError),
}

/// A whole body of at most `limit` bytes. One that comes in one chunk (the usual JSON request
/// or answer) is returned as it came, without a copy or a buffer list; longer ones are
/// gathered into one buffer. Trailers are ignored.
pub async fn read_whole<B>(mut body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut first: Option<Bytes> = None;
    let mut gathered: Option<bytes::BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        if let Some(buf) = gathered.as_mut() {
            buf.extend_from_slice(&data);
        } else if let Some(head) = first.take() {
            let mut buf =
                bytes::BytesMut::with_capacity(len.max(head.len().saturating_mul(2)).min(limit));
            buf.extend_from_slice(&head);
            buf.extend_from_slice(&data);
            gathered = Some(buf);
        } else {
            first = Some(data);
        }
    }
    Ok(match (gathered, first) {
        (Some(buf), _) => buf.freeze(),
        (None, Some(head)) => head,
        (None, None) => Bytes::new(),
    })
}

/// [`read_whole`] within `timeout` (`None` when it runs out). A body already in hand, as a small
/// request or answer usually is (it arrives with its head), is read without a timer: one is
/// started only if the read has to wait. A tokio timeout that is created and dropped unpolled
/// still reads the clock and sets up a timer entry (~180 instructions), twice per proxied request.
pub async fn read_whole_within<B>(
    body: B,
    limit: usize,
    timeout: std::time::Duration,
) -> Option<Result<Bytes, ReadError>>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut read = std::pin::pin!(read_whole(body, limit));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(done) = first {
        return Some(done);
    }
    tokio::time::timeout(timeout, read).await.ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::time::Duration;

    use http_body_util::StreamBody;

    fn chunks(
        parts: &[&'static str],
    ) -> impl http_body::Body<Data = Bytes, Error = BoxError> + Unpin {
        let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn one_chunk_comes_back_as_it_came_and_several_are_joined() {
        let one: &'static str = "{\"a\":1}";
        let got = read_whole(chunks(&[one]), 100).await.unwrap();
        assert_eq!(got, one);
        assert_eq!(got.as_ptr(), one.as_ptr(), "the single chunk is not copied");
        let got = read_whole(chunks(&["ab", "", "cd", "e"]), 100)
            .await
            .unwrap();
        assert_eq!(got, "abcde");
        assert!(read_whole(chunks(&[]), 100).await.unwrap().is_empty());
        assert!(read_whole(chunks(&["", ""]), 100).await.unwrap().is_empty());
        // Empty chunks around the one with data (a chunked body's end) change nothing.
        let got = read_whole(chunks(&["", one, ""]), 100).await.unwrap();
        assert_eq!(
            got.as_ptr(),
            one.as_ptr(),
            "empty chunks do not start a copy"
        );
    }

    #[tokio::test]
    async fn the_limit_counts_every_chunk() {
        assert_eq!(
            read_whole(chunks(&["abc", "de"]), 5).await.unwrap(),
            "abcde"
        );
        assert!(matches!(
            read_whole(chunks(&["abc", "def"]), 5).await,
            Err(ReadError::TooLarge)
        ));
        assert!(matches!(
            read_whole(chunks(&["abcdef"]), 5).await,
            Err(ReadError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn a_failing_body_is_an_error() {
        let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Err("connection reset".into()),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        match read_whole(body, 100).await {
            Err(ReadError::Body(e)) => assert_eq!(e.to_string(), "connection reset"),
            other => panic!("{other:?}"),
        }
    }

    /// A body already in hand is read in the first poll without touching tokio's timer: here
    /// outside any runtime, where creating a tokio timer would panic.
    #[test]
    fn a_body_in_hand_needs_no_timer() {
        let read = read_whole_within(chunks(&["ab", "cd"]), 100, Duration::from_secs(1));
        let mut read = std::pin::pin!(read);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match read.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Some(Ok(body))) => assert_eq!(body, "abcd"),
            other => panic!("{other:?}"),
        }
    }

    fn arriving_after(
        delay: Duration,
    ) -> impl http_body::Body<Data = Bytes, Error = BoxError> + Unpin {
        StreamBody::new(Box::pin(futures_util::stream::once(async move {
            tokio::time::sleep(delay).await;
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(b"late")))
        })))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_waits_is_timed() {
        let t = Duration::from_secs(10);
        let got = read_whole_within(arriving_after(Duration::from_secs(9)), 100, t).await;
        assert_eq!(got.unwrap().unwrap(), "late");
        let started = tokio::time::Instant::now();
        let got = read_whole_within(arriving_after(Duration::from_secs(11)), 100, t).await;
        assert!(got.is_none(), "timed out");
        assert_eq!(started.elapsed(), t);
        let never = StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, BoxError>,
        >());
        assert!(read_whole_within(never, 100, t).await.is_none());
    }
}
