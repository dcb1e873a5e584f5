//! S3 access against the real Garage: round trips, multipart, and each failure mode
//! classified with a message naming what and where.

use bytes::Bytes;
use rainlogs_core::config::S3Config;
use rainlogs_core::error::{Classify, ErrorClass};
use rainlogs_core::storage::{ObjectStore, StorageError, MIN_PART_SIZE};
use rainlogs_integration_tests::{base_source, TestEnv};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn put_get_head_list_delete_round_trip() {
    let env = TestEnv::new().await;
    let store = &env.app.store;
    store
        .put("a/one.txt", Bytes::from_static(b"first"))
        .await
        .unwrap();
    store
        .put("a/two.txt", Bytes::from_static(b"second!"))
        .await
        .unwrap();
    store
        .put("b/three.txt", Bytes::from_static(b"3"))
        .await
        .unwrap();

    assert_eq!(&store.get("a/one.txt").await.unwrap()[..], b"first");
    assert_eq!(store.head("a/two.txt").await.unwrap(), Some(7));
    assert_eq!(store.head("a/missing").await.unwrap(), None);

    let mut listed: Vec<_> = store
        .list_all("a/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![("a/one.txt".to_owned(), 5), ("a/two.txt".to_owned(), 7)]
    );

    store.delete("a/one.txt").await.unwrap();
    assert_eq!(store.head("a/one.txt").await.unwrap(), None);
    let failed = store
        .delete_many(&["a/two.txt".into(), "b/three.txt".into()])
        .await
        .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(store.list_all("").await.unwrap().is_empty());

    match store.get("a/one.txt").await {
        Err(e @ StorageError::NotFound { .. }) => {
            assert_eq!(e.class(), ErrorClass::Permanent);
            assert!(e.to_string().contains("a/one.txt"), "{e}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    env.teardown().await;
}

#[tokio::test]
async fn list_pages_through_more_keys_than_one_page() {
    let env = TestEnv::new().await;
    let store = &env.app.store;
    for i in 0..7 {
        store
            .put(&format!("p/{i:02}"), Bytes::from(vec![b'x'; i]))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let (page, next) = store.list_page("p/", token, 3).await.unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.into_iter().map(|o| o.key));
        pages += 1;
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        (0..7).map(|i| format!("p/{i:02}")).collect::<Vec<_>>()
    );
    env.teardown().await;
}

#[tokio::test]
async fn multipart_object_over_8_mib_reads_back_identical() {
    let env = TestEnv::new().await;
    let store = &env.app.store;
    // 9 MiB of non-repeating bytes: one full 5 MiB part and a 4 MiB last part.
    let mut data = Vec::with_capacity(9 << 20);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while data.len() < 9 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let data = Bytes::from(data);
    let mut upload = store.start_multipart("big/object.bin").await.unwrap();
    for part in data.chunks(MIN_PART_SIZE) {
        upload.put_part(Bytes::copy_from_slice(part)).await.unwrap();
    }
    upload.complete().await.unwrap();

    assert_eq!(store.head("big/object.bin").await.unwrap(), Some(9 << 20));
    let back = store.get("big/object.bin").await.unwrap();
    assert_eq!(Sha256::digest(&back), Sha256::digest(&data));
    env.teardown().await;
}

#[tokio::test]
async fn aborted_multipart_leaves_no_object() {
    let env = TestEnv::new().await;
    let store = &env.app.store;
    let mut upload = store.start_multipart("big/aborted.bin").await.unwrap();
    upload
        .put_part(Bytes::from(vec![7u8; MIN_PART_SIZE]))
        .await
        .unwrap();
    upload.abort().await.unwrap();
    assert_eq!(store.head("big/aborted.bin").await.unwrap(), None);
    env.teardown().await;
}

async fn store_with(change: impl FnOnce(&mut rainlogs_core::config::ConfigSource)) -> ObjectStore {
    let mut src = base_source().await;
    change(&mut src);
    ObjectStore::connect(&S3Config::from_source(&src).unwrap()).await
}

#[tokio::test]
async fn wrong_credentials_are_a_permanent_access_denied_naming_the_variables() {
    let store = store_with(|src| {
        src.set(
            S3Config::SECRET_ACCESS_KEY,
            "not-the-secret-0000000000000000",
        );
    })
    .await;
    let err = store.check().await.expect_err("wrong secret is refused");
    assert!(matches!(err, StorageError::AccessDenied { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let text = err.to_string();
    assert!(text.contains("RAINLOGS_S3_SECRET_ACCESS_KEY"), "{text}");
    assert!(!text.contains("not-the-secret"), "secret leaked: {text}");
}

#[tokio::test]
async fn unreachable_endpoint_is_retryable_and_names_it() {
    let port = closed_port();
    let store = store_with(|src| {
        src.set(S3Config::ENDPOINT, format!("http://127.0.0.1:{port}"));
    })
    .await;
    let err = store.put("x", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, StorageError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn missing_bucket_is_reported_as_such() {
    let store = store_with(|src| src.set(S3Config::BUCKET, "no-such-bucket-here")).await;
    let err = store.check().await.unwrap_err();
    assert!(matches!(err, StorageError::NoSuchBucket { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("no-such-bucket-here"), "{err}");
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
