//! Just enough S3 to list and delete vmbackup generations: ListObjectsV2, HEAD and DELETE,
//! signed with AWS Signature Version 4.
//!
//! vmbackup itself does the uploads; hasteward only needs to see which generations exist and
//! remove the ones retention lets go, the part vmbackupmanager (Enterprise) does. Credentials
//! come from the same places vmbackup reads them: `-credsFilePath` (an AWS shared credentials
//! file) or `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`); the region from
//! `AWS_REGION`/`AWS_DEFAULT_REGION` (default `us-east-1`). A custom endpoint is addressed
//! path-style, as vmbackup does by default; AWS itself virtual-host style.

use std::path::Path;

use chrono::Utc;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use ring::hmac;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Access keys, never printed.
#[derive(Clone)]
pub struct S3Credentials {
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Credentials({}, <redacted>)", self.access_key)
    }
}

impl S3Credentials {
    /// From an AWS shared credentials file (profile `AWS_PROFILE`, else `default`), else the
    /// `AWS_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Usage(format!(
                    "cannot read the credentials file {}: {e}",
                    path.display()
                ))
            })?;
            let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
            return parse_credentials_file(&text, &profile).ok_or_else(|| {
                Error::Usage(format!(
                    "{} has no aws_access_key_id and aws_secret_access_key in profile [{profile}]",
                    path.display()
                ))
            });
        }
        match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(access_key), Ok(secret_key)) if !access_key.is_empty() => Ok(Self {
                access_key,
                secret_key,
                session_token: std::env::var("AWS_SESSION_TOKEN").ok().filter(|t| !t.is_empty()),
            }),
            _ => Err(Error::Usage(
                "no S3 credentials: give --vm-credentials-file, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            )),
        }
    }
}

/// Parses `[profile]` sections of an AWS shared credentials file.
fn parse_credentials_file(text: &str, profile: &str) -> Option<S3Credentials> {
    let mut section = String::new();
    let (mut access, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if section != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => access = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(S3Credentials {
        access_key: access?,
        secret_key: secret?,
        session_token: token,
    })
}

/// One bucket, with a client.
pub struct S3Bucket {
    bucket: String,
    /// `scheme://host[:port]`.
    origin: String,
    path_style: bool,
    region: String,
    credentials: S3Credentials,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl std::fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Bucket({} at {})", self.bucket, self.origin)
    }
}

/// URI-encodes per SigV4 (RFC 3986 unreserved kept; `/` kept when `path`).
fn uri_encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (path && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// The SigV4 `Authorization` header for a body-less request.
#[allow(clippy::too_many_arguments)]
fn authorization(
    creds: &S3Credentials,
    region: &str,
    method: &str,
    host: &str,
    path: &str,
    query: &[(String, String)],
    amz_date: &str,
    payload_hash: &str,
) -> String {
    let date = &amz_date[..8];
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    q.sort();
    let canonical_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = vec![
        ("host", host.to_string()),
        ("x-amz-content-sha256", payload_hash.to_string()),
        ("x-amz-date", amz_date.to_string()),
    ];
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token", t.clone()));
    }
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{method}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        uri_encode(path, true)
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac_sha256(format!("AWS4{}", creds.secret_key).as_bytes(), date);
    let k_region = hmac_sha256(&k_date, region);
    let k_service = hmac_sha256(&k_region, "s3");
    let k_signing = hmac_sha256(&k_service, "aws4_request");
    let signature = hex(&hmac_sha256(&k_signing, &string_to_sign));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key
    )
}

/// The text of every `<tag>…</tag>` in `xml`, unescaped.
fn tag_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl S3Bucket {
    /// A client for `bucket` at `endpoint` (`None`: AWS in the configured region).
    pub fn new(bucket: &str, endpoint: Option<&str>, credentials: S3Credentials) -> Result<Self> {
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".into());
        let (origin, path_style) = match endpoint {
            Some(e) => {
                let e = e.trim_end_matches('/');
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(Error::Usage(format!(
                        "invalid --vm-s3-endpoint `{e}`: give a URL such as https://minio.example:9000"
                    )));
                }
                (e.to_string(), true)
            }
            None => (format!("https://{bucket}.s3.{region}.amazonaws.com"), false),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| Error::io("loading the system's CA certificates", e))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            bucket: bucket.to_string(),
            origin,
            path_style,
            region,
            credentials,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Sends a signed body-less request; returns status and body.
    async fn send(
        &self,
        method: &str,
        key: &str,
        query: &[(String, String)],
    ) -> Result<(u16, String)> {
        let path = if self.path_style {
            format!("/{}/{key}", self.bucket)
        } else {
            format!("/{key}")
        };
        let host = self
            .origin
            .split_once("://")
            .map(|(_, h)| h)
            .unwrap_or(&self.origin)
            .to_string();
        let amz_date = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let auth = authorization(
            &self.credentials,
            &self.region,
            method,
            &host,
            &path,
            query,
            &amz_date,
            EMPTY_SHA256,
        );
        let mut url = format!("{}{}", self.origin, uri_encode(&path, true));
        if !query.is_empty() {
            url.push('?');
            url.push_str(
                &query
                    .iter()
                    .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
                    .collect::<Vec<_>>()
                    .join("&"),
            );
        }
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("host", &host)
            .header("x-amz-content-sha256", EMPTY_SHA256)
            .header("x-amz-date", &amz_date)
            .header("authorization", auth);
        if let Some(t) = &self.credentials.session_token {
            req = req.header("x-amz-security-token", t);
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| Error::Usage(format!("invalid S3 request {method} {url}: {e}")))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| Error::ToolFailed {
                tool: "s3".into(),
                detail: format!("{method} {url}: {e}"),
            })?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    fn failure(&self, what: &str, status: u16, body: &str) -> Error {
        let code = tag_values(body, "Code")
            .into_iter()
            .next()
            .unwrap_or_default();
        let message = tag_values(body, "Message")
            .into_iter()
            .next()
            .unwrap_or_default();
        Error::ToolFailed {
            tool: "s3".into(),
            detail: format!(
                "{what} in bucket {}: HTTP {status} {code} {message}",
                self.bucket
            )
            .trim_end()
            .to_string(),
        }
    }

    /// Lists under `prefix`: with `delimiter`, the common prefixes ("directories"); without,
    /// every key.
    pub async fn list(&self, prefix: &str, delimiter: bool) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type".to_string(), "2".to_string()),
                ("prefix".to_string(), prefix.to_string()),
            ];
            if delimiter {
                query.push(("delimiter".into(), "/".into()));
            }
            if let Some(t) = &token {
                query.push(("continuation-token".into(), t.clone()));
            }
            let (status, body) = self.send("GET", "", &query).await?;
            if status != 200 {
                return Err(self.failure(&format!("listing {prefix}"), status, &body));
            }
            if delimiter {
                // <CommonPrefixes><Prefix>…</Prefix></CommonPrefixes>: the top-level <Prefix>
                // echoes the request, so read only those inside CommonPrefixes.
                for block in tag_values(&body, "CommonPrefixes") {
                    out.extend(tag_values(&block, "Prefix"));
                }
            } else {
                for block in tag_values(&body, "Contents") {
                    out.extend(tag_values(&block, "Key"));
                }
            }
            let truncated =
                tag_values(&body, "IsTruncated").first().map(String::as_str) == Some("true");
            token = tag_values(&body, "NextContinuationToken")
                .into_iter()
                .next();
            if !truncated || token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        let (status, body) = self.send("HEAD", key, &[]).await?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(self.failure(&format!("checking {key}"), s, &body)),
        }
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let (status, body) = self.send("DELETE", key, &[]).await?;
        if matches!(status, 200 | 204 | 404) {
            Ok(())
        } else {
            Err(self.failure(&format!("deleting {key}"), status, &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_aws_documentation_example() {
        // "GET Object" example from the SigV4 S3 documentation (examplebucket, 20130524).
        let creds = S3Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        // The documented "GET Bucket Lifecycle" example signs host, x-amz-content-sha256 and
        // x-amz-date only, like these requests.
        let auth = authorization(
            &creds,
            "us-east-1",
            "GET",
            "examplebucket.s3.amazonaws.com",
            "/",
            &[("lifecycle".into(), "".into())],
            "20130524T000000Z",
            EMPTY_SHA256,
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    #[test]
    fn list_responses_are_read() {
        let xml = "<ListBucketResult><Prefix>vm/daily/</Prefix><CommonPrefixes><Prefix>vm/daily/2026-11-23/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>vm/daily/a&amp;b/</Prefix></CommonPrefixes><IsTruncated>false</IsTruncated></ListBucketResult>";
        let mut got = Vec::new();
        for block in tag_values(xml, "CommonPrefixes") {
            got.extend(tag_values(&block, "Prefix"));
        }
        assert_eq!(got, vec!["vm/daily/2026-11-23/", "vm/daily/a&b/"]);
    }

    #[test]
    fn credentials_files_are_read_by_profile() {
        let text = "[other]\naws_access_key_id = X\n[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n";
        let c = parse_credentials_file(text, "default").unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("AK", "SK"));
        assert!(parse_credentials_file(text, "other").is_none());
        assert!(!format!("{c:?}").contains("SK"));
    }

    #[test]
    fn keys_are_encoded_like_sigv4_wants() {
        assert_eq!(
            uri_encode("/b/daily/2026-11-24:05/x y", true),
            "/b/daily/2026-11-24%3A05/x%20y"
        );
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}
