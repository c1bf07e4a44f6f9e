//! Pictures and files, end to end over HTTP and `/ws`: uploaded, sent with a message, fetched
//! by those who may see them and nobody else, refused with a reason past every limit, and
//! gone with their message.

mod common;

use common::*;
use hubbub::protocol::Attachment;
use serde_json::json;

/// A small PNG whose header claims 60,000 × 60,000 pixels: 10 GB once unpacked.
fn bomb() -> Vec<u8> {
    let mut bytes = png(8, 8);
    // The IHDR chunk: length (4), type (4), width (4) at 16, height (4) at 20, CRC after 13
    // bytes of data, over type and data.
    bytes[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn attachment(status: u16, head: &str, body: &[u8]) -> Attachment {
    assert_eq!(status, 200, "{head}\n{}", String::from_utf8_lossy(body));
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn a_picture_is_sent_seen_by_the_room_and_gone_with_its_message() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let mut bob = server.joined("bob").await;
    alice.recv().await; // bob joined
    let (alice_token, bob_token) = (alice.token_for("alice"), bob.token_for("bob"));
    let (alice_token, bob_token) = (alice_token.unwrap(), bob_token.unwrap());

    let picture = png(800, 600);
    let (status, head, body) = upload(
        server.addr,
        Some(&alice_token),
        "general",
        "cat 🐱 <b>.png",
        "image/png",
        &picture,
    )
    .await;
    let file = attachment(status, &head, &body);
    assert_eq!(file.name, "cat 🐱 <b>.png");
    assert_eq!(file.content_type, "image/png");
    assert_eq!(
        (file.size, file.image.map(|p| (p.width, p.height))),
        (picture.len() as u64, Some((800, 600)))
    );

    alice
        .send_json(json!({"type": "message", "text": "", "file": file.id}))
        .await;
    let seen = bob.recv_message().await;
    assert_eq!(seen.file.as_ref(), Some(&file));
    assert_eq!(alice.recv_message().await, seen);

    let (status, head, bytes) = fetch(server.addr, &file.url(), Some(&bob_token)).await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(bytes, picture);
    assert!(head.contains("content-type: image/png"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; sandbox"),
        "{head}"
    );
    assert!(
        head.contains(
            "content-disposition: inline; filename*=utf-8''cat%20%f0%9f%90%b1%20%3cb%3e.png"
        ),
        "{head}"
    );
    let (status, head, thumb) = fetch(server.addr, &file.thumbnail_url(), Some(&bob_token)).await;
    assert_eq!(status, 200, "{head}");
    let thumb = image::load_from_memory(&thumb).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));

    // Not signed in: nothing; a made-up id: nothing.
    let (status, _, body) = fetch(server.addr, &file.url(), None).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = fetch(server.addr, "/files/../../chat.db", Some(&bob_token)).await;
    assert_eq!(status, 404);
    let (status, _, _) = fetch(
        server.addr,
        &format!("/files/{}", "0".repeat(32)),
        Some(&bob_token),
    )
    .await;
    assert_eq!(status, 404);

    // A file is sent once.
    alice
        .send_json(json!({"type": "message", "text": "again", "file": file.id}))
        .await;
    assert!(alice.recv_error().await.contains("not_allowed"));

    // Deleting the message deletes the file, from storage and from the disk.
    alice
        .send_json(json!({"type": "delete", "id": seen.id}))
        .await;
    let change = bob.recv_message().await;
    assert!(change.change.is_some());
    let (status, _, _) = fetch(server.addr, &file.url(), Some(&alice_token)).await;
    assert_eq!(status, 404);
    let on_disk: Vec<_> = std::fs::read_dir(server.dir.path().join("files"))
        .unwrap()
        .collect();
    assert!(on_disk.is_empty(), "{on_disk:?}");
}

#[tokio::test]
async fn a_private_file_is_for_its_two_people_and_an_unsent_one_for_its_owner() {
    let server = TestServer::start().await;
    let mut alice = server.joined("alice").await;
    let bob = server.joined("bob").await;
    let carol = server.joined("carol").await;
    let token = |c: &Client, name: &str| c.token_for(name).unwrap();
    let (alice_token, bob_token, carol_token) = (
        token(&alice, "alice"),
        token(&bob, "bob"),
        token(&carol, "carol"),
    );
    let notes = b"minutes of the meeting\n";
    let (status, head, body) = upload(
        server.addr,
        Some(&alice_token),
        "general",
        "notes.txt",
        "text/plain",
        notes,
    )
    .await;
    let file = attachment(status, &head, &body);
    assert_eq!(file.image, None);

    // Before it is sent, only its owner sees it.
    for (who, expected) in [(&alice_token, 200), (&bob_token, 404)] {
        assert_eq!(fetch(server.addr, &file.url(), Some(who)).await.0, expected);
    }
    // Someone else cannot send it, nor can it be sent in another room.
    let mut carol = carol;
    carol
        .send_json(json!({"type": "message", "text": "mine", "file": file.id}))
        .await;
    assert!(carol.recv_error().await.contains("not_found"));

    alice
        .send_json(json!({"type": "message", "text": "for you", "to": "bob", "file": file.id}))
        .await;
    let sent = alice.recv_message().await;
    assert_eq!(sent.file.as_ref().map(|f| &f.id), Some(&file.id));
    for (who, expected) in [(&alice_token, 200), (&bob_token, 200), (&carol_token, 404)] {
        let (status, head, bytes) = fetch(server.addr, &file.url(), Some(who)).await;
        assert_eq!(status, expected, "{head}");
        if status == 200 {
            assert_eq!(bytes, notes);
            // Not a picture: a download, never shown as what it claims to be.
            assert!(
                head.contains("content-type: application/octet-stream"),
                "{head}"
            );
            assert!(head.contains("content-disposition: attachment"), "{head}");
        }
    }
    // A text file has no thumbnail.
    assert_eq!(
        fetch(server.addr, &file.thumbnail_url(), Some(&alice_token))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn uploads_past_a_limit_are_refused_with_the_reason_and_leave_nothing_behind() {
    let server = TestServer::with(|c| {
        c.max_upload_bytes = 64 * 1024;
        c.uploads_per_hour = 5;
    })
    .await;
    let alice = server.joined("alice").await;
    let token = alice.token_for("alice").unwrap();
    let refused = |(status, _, body): (u16, String, Vec<u8>)| {
        (status, String::from_utf8_lossy(&body).trim().to_string())
    };
    let cases: [(&str, &str, Vec<u8>, u16, &str); 5] = [
        (
            "big.zip",
            "application/zip",
            vec![0; 100 * 1024],
            413,
            "at most 65.5 KB",
        ),
        (
            "page.html",
            "text/html",
            b"<script>alert(1)</script>".to_vec(),
            415,
            "cannot be sent",
        ),
        (
            "fake.png",
            "image/png",
            b"<svg onload=alert(1)>".to_vec(),
            415,
            "PNG, JPEG, GIF or WebP",
        ),
        ("bomb.png", "image/png", bomb(), 422, "cannot be read"),
        (
            "ok.pdf",
            "application/pdf",
            b"%PDF-1.4".to_vec(),
            200,
            "\"name\":\"ok.pdf\"",
        ),
    ];
    for (name, kind, body, status, says) in cases {
        let (got, text) =
            refused(upload(server.addr, Some(&token), "general", name, kind, &body).await);
        assert_eq!(got, status, "{name}: {text}");
        assert!(text.contains(says), "{name}: {text}");
    }
    let (status, text) =
        refused(upload(server.addr, None, "general", "x.txt", "text/plain", b"x").await);
    assert_eq!(
        (status, text.as_str()),
        (401, "sign in to send or see files")
    );
    let (status, _) = refused(
        upload(
            server.addr,
            Some(&token),
            "Bad Room",
            "x.txt",
            "text/plain",
            b"x",
        )
        .await,
    );
    assert_eq!(status, 400);
    // Five an hour (refused ones count, once the size and the account are checked): the
    // sixth is refused.
    let (status, text) = refused(
        upload(
            server.addr,
            Some(&token),
            "general",
            "x.txt",
            "text/plain",
            b"x",
        )
        .await,
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = refused(
        upload(
            server.addr,
            Some(&token),
            "general",
            "x.txt",
            "text/plain",
            b"x",
        )
        .await,
    );
    assert_eq!(
        (status, text.as_str()),
        (429, "at most 5 uploads an hour; try again later")
    );
    // From another site: refused before anything is read.
    let bearer = format!("Bearer {token}");
    let (status, _, _) = http_post_bytes(
        server.addr,
        "/api/files?room=general&name=x.txt",
        "text/plain",
        b"x",
        &[
            ("Sec-Fetch-Site", "cross-site"),
            ("Authorization", bearer.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 403);
    // Only the two accepted files are on disk (no half-written or refused ones).
    let mut on_disk: Vec<String> = std::fs::read_dir(server.dir.path().join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk.len(), 2, "{on_disk:?}");
    assert!(on_disk.iter().all(|f| f.len() == 32), "{on_disk:?}");
}

#[tokio::test]
async fn pictures_uploaded_at_once_wait_their_turn_to_be_decoded_and_all_arrive() {
    // The node decodes two pictures at a time (each may take a lot of memory): the others
    // wait, and none is refused or lost for it.
    let server = TestServer::start().await;
    let alice = server.joined("alice").await;
    let token = alice.token_for("alice").unwrap();
    let picture = png(1_200, 900);
    let uploads = (0..6).map(|i| {
        let (token, picture) = (token.clone(), picture.clone());
        let addr = server.addr;
        async move {
            let name = format!("picture {i}.png");
            upload(addr, Some(&token), "general", &name, "image/png", &picture).await
        }
    });
    for (status, head, body) in futures::future::join_all(uploads).await {
        let file = attachment(status, &head, &body);
        assert!(file.image.is_some(), "a thumbnail was made");
    }
}
