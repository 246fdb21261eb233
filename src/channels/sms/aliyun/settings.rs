//! An aliyun gateway's settings: its keys, and what they become.

use crate::check::Checker;
use crate::values::Secret;
use reqwest::Url;
use serde::Deserialize;

pub const BASE_URL: &str = "https://dysmsapi.aliyuncs.com";

/// An aliyun gateway's own keys (besides `kind`, `rate`, `timeout`, `base_url`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    access_key_id: Option<String>,
    access_key_secret_env: Option<String>,
    access_key_secret_file: Option<String>,
    sign_name: Option<String>,
    region: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AliyunConfig {
    pub base_url: Url,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub sign_name: String,
    pub region: String,
}

pub fn check(c: &mut Checker, at: &str, base_url: Option<&str>, g: Raw) -> AliyunConfig {
    let access_key_id = c
        .required(
            at,
            "access_key_id",
            g.access_key_id.as_deref(),
            "your AccessKey ID, LTAI…",
        )
        .trim()
        .to_string();
    let access_key_secret = c.required_secret(
        at,
        "access_key_secret",
        (
            g.access_key_secret_env.as_deref(),
            g.access_key_secret_file.as_deref(),
        ),
        "AccessKey secret",
        "access_key_secret_env: ALIYUN_SECRET (or access_key_secret_file: PATH)",
    );
    let sign_name = c
        .required(
            at,
            "sign_name",
            g.sign_name.as_deref(),
            "the approved signature, e.g. 示例商店",
        )
        .trim()
        .to_string();
    AliyunConfig {
        base_url: base_url
            .and_then(|u| c.url(&format!("{at}.base_url"), u, BASE_URL))
            .unwrap_or_else(|| Url::parse(BASE_URL).expect("a static URL")),
        access_key_id,
        access_key_secret,
        sign_name,
        region: g.region.unwrap_or_else(|| "cn-hangzhou".into()),
    }
}
