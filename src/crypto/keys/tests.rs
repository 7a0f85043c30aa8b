use super::*;

#[test]
fn init_writes_private_versioned_files_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let escrow = dir.path().join("escrow.identity");
    let report = Keyring::init(&keys, &escrow).unwrap();
    assert_eq!(report.written.len(), 4);
    for name in ["relay.v1.key", "pseudonym.v1.key", "vapid.v1.key"] {
        let mode = fs::metadata(keys.join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    assert_eq!(
        fs::metadata(&escrow).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ring = Keyring::load(&keys).unwrap();
    assert_eq!(ring.key_version(), "e1.p1");
    let escrow_ids = IdentityKey::parse_file(&fs::read_to_string(&escrow).unwrap());
    assert_eq!(escrow_ids[0].to_public(), *ring.escrow().1);

    assert!(matches!(
        Keyring::init(&keys, &dir.path().join("other")),
        Err(KeyError::Exists(_))
    ));
    let before = fs::read(&escrow).unwrap();
    assert!(Keyring::init(&dir.path().join("fresh"), &escrow).is_err());
    assert_eq!(fs::read(&escrow).unwrap(), before);
}

#[test]
fn rotation_adds_a_version_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    Keyring::init(&keys, &dir.path().join("e1")).unwrap();
    Keyring::rotate(&keys, KeyKind::Escrow, &dir.path().join("e2")).unwrap();
    Keyring::rotate(&keys, KeyKind::Pseudonym, &dir.path().join("unused")).unwrap();
    let ring = Keyring::load(&keys).unwrap();
    assert_eq!(ring.key_version(), "e2.p2");
    let v = ring.versions();
    assert_eq!(v.iter().filter(|i| i.kind == KeyKind::Escrow).count(), 2);
    assert_eq!(v.iter().filter(|i| i.current).count(), 4);
    assert!(!dir.path().join("unused").exists());
}

#[test]
fn init_writes_a_vapid_key_that_keys_show_lists_by_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    Keyring::init(&keys, &dir.path().join("e")).unwrap();
    let ring = Keyring::load(&keys).unwrap();
    let vapid = ring.vapid().unwrap();
    let listed: Vec<_> = ring
        .versions()
        .into_iter()
        .filter(|v| v.kind == KeyKind::Vapid)
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].fingerprint, vapid.fingerprint());
    assert!(listed[0].current);
    let file = fs::read_to_string(keys.join("vapid.v1.key")).unwrap();
    assert!(file.contains("-----BEGIN PRIVATE KEY-----"));
    assert!(file.contains(&vapid.public_key_base64url()));
}

#[test]
fn a_keyring_without_a_vapid_key_loads_with_push_disabled_until_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    Keyring::init(&keys, &dir.path().join("e")).unwrap();
    fs::remove_file(keys.join("vapid.v1.key")).unwrap();
    let old = Keyring::load(&keys).unwrap();
    assert!(old.vapid().is_none());
    assert!(old.versions().iter().all(|v| v.kind != KeyKind::Vapid));

    let report = Keyring::rotate(&keys, KeyKind::Vapid, &dir.path().join("unused")).unwrap();
    assert_eq!(report.written, vec![keys.join("vapid.v1.key")]);
    assert!(Keyring::load(&keys).unwrap().vapid().is_some());
}

#[test]
fn vapid_rotation_adds_a_version_and_the_newest_signs() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    Keyring::init(&keys, &dir.path().join("e")).unwrap();
    let first = Keyring::load(&keys)
        .unwrap()
        .vapid()
        .unwrap()
        .public_key_base64url();
    Keyring::rotate(&keys, KeyKind::Vapid, &dir.path().join("unused")).unwrap();
    let ring = Keyring::load(&keys).unwrap();
    let current = ring.vapid().unwrap();
    assert_ne!(current.public_key_base64url(), first);
    let vapid: Vec<_> = ring
        .versions()
        .into_iter()
        .filter(|v| v.kind == KeyKind::Vapid)
        .map(|v| (v.version, v.current))
        .collect();
    assert_eq!(vapid, [(1, false), (2, true)]);
    assert_eq!(ring.key_version(), "e1.p1");
}

#[test]
fn a_broken_or_open_vapid_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    Keyring::init(&keys, &dir.path().join("e")).unwrap();
    let path = keys.join("vapid.v1.key");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(Keyring::load(&keys), Err(KeyError::TooOpen(..))));
    fs::remove_file(&path).unwrap();
    write_new(
        &path,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        0o600,
    )
    .unwrap();
    assert!(matches!(
        Keyring::load(&keys),
        Err(KeyError::Invalid(_, KeyKind::Vapid))
    ));
}

#[test]
fn a_world_readable_secret_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    Keyring::init(&keys, &dir.path().join("e")).unwrap();
    fs::set_permissions(keys.join("relay.v1.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let err = Keyring::load(&keys).err().unwrap().to_string();
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn file_names_parse_strictly() {
    assert_eq!(
        KeyKind::parse_file_name("relay.v3.key"),
        Some((KeyKind::Relay, 3))
    );
    assert_eq!(KeyKind::parse_file_name("relay.v0.key"), None);
    assert_eq!(
        KeyKind::parse_file_name("vapid.v2.key"),
        Some((KeyKind::Vapid, 2))
    );
    assert_eq!(KeyKind::parse_file_name("relay.v3.pub"), None);
    assert_eq!(KeyKind::parse_file_name("escrow.v1.pub.bak"), None);
}
