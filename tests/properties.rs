//! Property-based robustness of the parsers a client or an operator feeds
//! (proptest; the toolchain is stable-only, so no cargo-fuzz): the
//! `Authorization` reader and the JWS parser, the path normaliser and the
//! configuration loader never panic on any input; the normaliser's output is
//! idempotent and never holds a dot segment or an encoded separator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use http::{HeaderMap, HeaderValue, Uri};
use portcullis::auth::bearer;
use portcullis::auth::verify;
use portcullis::config::Config;
use portcullis::routing::normalize;
use proptest::prelude::*;

/// Path-ish strings, heavy on the characters that matter to normalisation.
fn path_strategy() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just(";".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%2F".to_owned()),
        Just("%5c".to_owned()),
        Just("%3b".to_owned()),
        Just("%00".to_owned()),
        Just("%25".to_owned()),
        Just("%252e".to_owned()),
        Just("%c3%a9".to_owned()),
        Just("%c0%ae".to_owned()),
        Just("%".to_owned()),
        Just("%g1".to_owned()),
        "[a-zA-Z0-9_~!$&'()*+,=:@-]{1,6}",
    ];
    prop::collection::vec(atom, 0..12).prop_map(|parts| format!("/{}", parts.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)))]

    #[test]
    fn the_normaliser_never_panics_and_its_output_is_stable(raw in path_strategy(), query in "[a-z=&%0-9]{0,8}") {
        let target = if query.is_empty() { raw.clone() } else { format!("{raw}?{query}") };
        let Ok(uri) = target.parse::<Uri>() else { return Ok(()); };
        let Ok(once) = normalize(&uri, false) else { return Ok(()); };
        let encoded = once.encoded();
        // Never a dot segment, an encoded separator or an encoded `;`.
        for seg in once.decoded().split('/') {
            prop_assert!(seg != "." && seg != "..", "{raw} -> {}", once.decoded());
        }
        // Matrix parameters pass as sent (after their own checks); the path
        // segments themselves hold no encoded separator, `;` or NUL.
        let names: String = encoded
            .split('/')
            .map(|seg| seg.split(';').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("/")
            .to_ascii_lowercase();
        for bad in ["%2f", "%5c", "%3b", "%00"] {
            prop_assert!(!names.contains(bad), "{raw} -> {encoded}");
        }
        for bad in ["%2f", "%5c", "%00"] {
            prop_assert!(!encoded.to_ascii_lowercase().contains(bad), "{raw} -> {encoded}");
        }
        prop_assert!(!once.decoded().contains('\0'));
        // Idempotent: the upstream's path normalises to itself.
        let again = normalize(&encoded.parse::<Uri>().unwrap(), false).unwrap();
        prop_assert_eq!(again.decoded(), once.decoded());
        prop_assert_eq!(again.encoded(), encoded);
    }

    #[test]
    fn the_normaliser_never_panics_on_anything(raw in "\\PC{0,40}") {
        if let Ok(uri) = raw.parse::<Uri>() {
            let _ = normalize(&uri, false);
            let _ = normalize(&uri, true);
        }
    }

    #[test]
    fn the_authorization_reader_never_panics(values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..3)) {
        let mut h = HeaderMap::new();
        for v in values {
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                h.append(http::header::AUTHORIZATION, v);
            }
        }
        let _ = bearer::read(&h);
    }

    #[test]
    fn the_jws_parser_never_panics(
        header in "[A-Za-z0-9_-]{0,40}",
        payload in "[A-Za-z0-9_-]{0,60}",
        signature in "[A-Za-z0-9_.-]{0,20}",
        anything in "\\PC{0,60}",
    ) {
        let _ = verify::parse(&format!("{header}.{payload}.{signature}"));
        let _ = verify::parse(&anything);
        // Well-formed base64 around arbitrary JSON-ish bytes.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let _ = verify::parse(&format!("{}.{}.sig", b64.encode(&anything), b64.encode(&header)));
    }

    #[test]
    fn the_config_loader_never_panics(text in "\\PC{0,300}") {
        let _ = Config::from_yaml_with_env(&text, Path::new("p.yaml"), &|_| None);
    }

    #[test]
    fn mutated_good_configs_never_panic(cut in 0usize..2000, insert in "[ \\n:{}\\[\\]a-z0-9\"$*/-]{0,12}") {
        let good = include_str!("../gateway.yaml");
        let at = good
            .char_indices()
            .map(|(i, _)| i)
            .nth(cut % good.chars().count())
            .unwrap_or(0);
        let text = format!("{}{insert}{}", &good[..at], &good[at..]);
        let _ = Config::from_yaml_with_env(&text, Path::new("p.yaml"), &|_| None);
    }
}
