//! Proton's URL grammar: `[amqp[s]://][user[:password]@]host[:port][/address]`.
//!
//! IPv6 hosts go in brackets (`amqp://[::1]:5672`); the port defaults to
//! 5672 for `amqp` and 5671 for `amqps`; user and password are
//! percent-decoded; the address is everything after the first `/` that
//! follows host and port, so `amqp://host//queue/a` addresses `/queue/a`.

use crate::error::{Error, ErrorKind};
use std::fmt;
use std::str::FromStr;

/// A parsed AMQP URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Address {
    /// Whether TLS is asked for (`amqps`).
    pub tls: bool,
    /// The user name, if any.
    pub user: Option<String>,
    /// The password, if any.
    pub password: Option<String>,
    /// The host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port: given, or 5672 (`amqp`) / 5671 (`amqps`).
    pub port: u16,
    /// The node address after the host, if any (without the leading `/`).
    pub address: Option<String>,
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Address")
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("address", &self.address)
            .finish()
    }
}

impl fmt::Display for Address {
    /// The URL without its credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)?;
        }
        if let Some(a) = &self.address {
            write!(f, "/{a}")?;
        }
        Ok(())
    }
}

fn invalid(url: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("invalid URL {url:?}: {why}"),
    )
}

fn decode(url: &str, s: &str) -> Result<String, Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            invalid(
                url,
                "user or password is not valid UTF-8 once percent-decoded",
            )
        })
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("amqps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("amqp://") {
            (false, r)
        } else if let Some((scheme, _)) = url.split_once("://") {
            return Err(invalid(
                url,
                &format!("unknown scheme {scheme:?} (use amqp or amqps)"),
            ));
        } else {
            (false, url)
        };
        // The authority ends at the first '/' (which starts the address).
        let (authority, address) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(ui) => match ui.split_once(':') {
                Some((u, p)) => (Some(decode(url, u)?), Some(decode(url, p)?)),
                None => (Some(decode(url, ui)?), None),
            },
            None => (None, None),
        };
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let Some((h, after)) = r.split_once(']') else {
                return Err(invalid(url, "unclosed '[' in IPv6 host"));
            };
            match after {
                "" => (h, None),
                p if p.starts_with(':') => (h, Some(&p[1..])),
                _ => return Err(invalid(url, "unexpected characters after ']'")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                Some(_) => {
                    return Err(invalid(
                        url,
                        "IPv6 addresses must be in brackets, e.g. [::1]",
                    ))
                }
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(invalid(url, "no host"));
        }
        let port = match port {
            None | Some("") => {
                if tls {
                    5671
                } else {
                    5672
                }
            }
            Some("amqp") => 5672,
            Some("amqps") => 5671,
            Some(p) => p.parse::<u16>().map_err(|_| {
                invalid(url, &format!("port {p:?} is not a number from 0 to 65535"))
            })?,
        };
        Ok(Address {
            tls,
            user,
            password,
            host: host.to_string(),
            port,
            address: address.filter(|a| !a.is_empty()).map(str::to_string),
        })
    }
}

impl TryFrom<&str> for Address {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        s.parse()
    }
}

impl TryFrom<&url::Url> for Address {
    type Error = Error;
    fn try_from(u: &url::Url) -> Result<Self, Error> {
        u.as_str().parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn proton_grammar() {
        let a = p("amqp://alice:s%40cret@example.com:1234/queue");
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert_eq!(a.password.as_deref(), Some("s@cret"));
        assert_eq!((a.host.as_str(), a.port), ("example.com", 1234));
        assert_eq!(a.address.as_deref(), Some("queue"));
        let a = p("localhost:5672/examples");
        assert_eq!((a.tls, a.host.as_str(), a.port), (false, "localhost", 5672));
        assert_eq!(a.address.as_deref(), Some("examples"));
        let a = p("amqps://broker");
        assert_eq!((a.tls, a.port, a.address), (true, 5671, None));
        let a = p("amqp://[::1]:5673//queue/a");
        assert_eq!((a.host.as_str(), a.port), ("::1", 5673));
        assert_eq!(a.address.as_deref(), Some("/queue/a"));
        assert_eq!(p("[::]").port, 5672);
        assert_eq!(p("amqp://h:amqps").port, 5671);
        assert!(!format!("{:?}", p("u:pw@h")).contains("pw"));
        assert_eq!(p("amqp://h:1/x").to_string(), "amqp://h:1/x");
    }

    #[test]
    fn errors_name_the_problem() {
        for (url, why) in [
            ("http://h", "unknown scheme"),
            ("amqp://h:99999", "port"),
            ("amqp://:5672", "no host"),
            ("amqp://[::1", "unclosed"),
            ("amqp://::1:5672", "brackets"),
        ] {
            let e = url.parse::<Address>().unwrap_err();
            assert!(e.to_string().contains(why), "{url}: {e}");
            assert_eq!(e.kind(), &ErrorKind::InvalidArgument);
        }
    }
}
