//! Reading a request body whole under `max_body` and `body_timeout`, and
//! replaying it upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;

use super::*;

/// A client body: these frames, then the end, or (`held`) nothing more.
struct Frames {
    frames: VecDeque<Frame<Bytes>>,
    held: bool,
}

impl Frames {
    fn new(pieces: &[&'static [u8]], trailers: Option<HeaderMap>, held: bool) -> Frames {
        let mut frames: VecDeque<_> = pieces
            .iter()
            .map(|p| Frame::data(Bytes::from_static(p)))
            .collect();
        frames.extend(trailers.map(Frame::trailers));
        Frames { frames, held }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match this.frames.pop_front() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None if this.held => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn identity() -> Arc<[HeaderName]> {
    Arc::from(vec![HeaderName::from_static("x-auth-subject")])
}

fn trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("x-checksum", "c0ffee".parse().unwrap());
    t.insert("x-auth-subject", "admin".parse().unwrap());
    t
}

/// Every frame the upstream would get, and how the body said it ended.
async fn replay(read: Buffered) -> (Vec<Frame<Bytes>>, Option<BodyEnd>, SizeHint) {
    let (mut body, sent) = UpstreamBody::buffered(Box::new(read), identity());
    let hint = body.size_hint();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.unwrap());
    }
    let end = match sent {
        Some(rx) => Some(rx.await.unwrap()),
        None => None,
    };
    (frames, end, hint)
}

#[tokio::test]
async fn a_body_is_read_whole_and_replayed_with_its_length() {
    let mut client = Frames::new(&[b"hello ", b"wor", b"ld"], None, false);
    let read = read_whole(&mut client, 11, TIMEOUT).await.unwrap();
    let (frames, end, hint) = replay(read).await;
    assert_eq!(hint.exact(), Some(11));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].data_ref().unwrap(), "hello world");
    assert_eq!(end, Some(BodyEnd::Complete));
}

#[tokio::test]
async fn trailers_are_replayed_after_the_data_without_client_controlled_names() {
    let mut client = Frames::new(&[b"abc"], Some(trailers()), false);
    let read = read_whole(&mut client, 1024, TIMEOUT).await.unwrap();
    let (frames, end, hint) = replay(read).await;
    // HTTP/1.1 carries trailers only in a chunked body: no exact length.
    assert_eq!(hint.exact(), None);
    assert_eq!(hint.lower(), 3);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].data_ref().unwrap(), "abc");
    let t = frames[1].trailers_ref().unwrap();
    assert_eq!(t["x-checksum"], "c0ffee");
    assert!(!t.contains_key("x-auth-subject"), "{t:?}");
    assert_eq!(end, Some(BodyEnd::Complete));
}

#[tokio::test]
async fn an_empty_body_replays_as_none() {
    let mut client = Frames::new(&[b""], None, false);
    let read = read_whole(&mut client, 1024, TIMEOUT).await.unwrap();
    let (frames, end, hint) = replay(read).await;
    assert!(frames.is_empty());
    assert_eq!(hint.exact(), Some(0));
    assert_eq!(end, None, "a body that is no body reports nothing");
}

#[tokio::test]
async fn the_limit_is_held_to_the_byte() {
    let pieces: &[&'static [u8]] = &[b"0123456789", b"0123456789", b"0123"];
    let mut client = Frames::new(pieces, None, false);
    let read = read_whole(&mut client, 24, TIMEOUT).await.unwrap();
    assert_eq!(read.data.as_ref().map(Bytes::len), Some(24));
    let mut client = Frames::new(pieces, None, true);
    let over = read_whole(&mut client, 23, TIMEOUT).await;
    assert!(
        matches!(over, Err(RequestBodyError::TooLarge(23))),
        "{over:?}"
    );
}

#[tokio::test]
async fn memory_stays_within_the_limit_however_small_the_pieces() {
    // A thousand one-byte pieces: one copy of the data, its buffer no larger
    // than the limit.
    let mut client = Frames {
        frames: (0..1000)
            .map(|_| Frame::data(Bytes::from_static(b"x")))
            .collect(),
        held: false,
    };
    let read = read_whole(&mut client, 1000, TIMEOUT).await.unwrap();
    let data = read.data.unwrap();
    assert_eq!(data.len(), 1000);
    assert!(data.iter().all(|b| *b == b'x'));
    let mut grown = Vec::new();
    for _ in 0..1000 {
        grow(&mut grown, 1, 1000);
        grown.push(0);
        assert!(grown.capacity() <= 1000, "{}", grown.capacity());
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stops_arriving_is_refused_at_the_timeout() {
    let mut client = Frames::new(&[b"0123456789"], None, true);
    let start = Instant::now();
    let stalled = read_whole(&mut client, 1024, TIMEOUT).await;
    assert!(
        matches!(stalled, Err(RequestBodyError::Stalled(t)) if t == TIMEOUT),
        "{stalled:?}"
    );
    assert_eq!(start.elapsed(), TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_keeps_coming_is_read_however_long_it_takes() {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let read = tokio::spawn(async move {
        let mut client = Held(rx);
        read_whole(&mut client, 1024, TIMEOUT).await
    });
    // Ten pieces, each just inside the bound: ten times the bound in all.
    for _ in 0..10 {
        tokio::time::sleep(TIMEOUT - Duration::from_millis(1)).await;
        tx.send(Bytes::from_static(b"x")).await.unwrap();
    }
    drop(tx);
    let read = read.await.unwrap().unwrap();
    assert_eq!(read.data.unwrap(), "xxxxxxxxxx");
}

/// A body fed from a channel: what the test sends, then the end once the
/// sender is gone.
struct Held(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for Held {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}
