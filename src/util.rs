//! Small helpers shared by several modules (durations, hashing).

use std::time::Duration;

/// Parses a duration as rule and config files write it: `30s`, `15m`, `24h`, `7d`
/// (also `500ms`). A bare number is refused: the unit must be explicit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("invalid duration `{text}`: missing unit (use s, m, h or d, e.g. `24h`)")
    })?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid duration `{text}`: expected a number followed by s, m, h or d"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "invalid duration `{text}`: unknown unit `{unit}` (use s, m, h or d, e.g. `24h`)"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

/// Lower-case hex SHA-256 of some bytes; used for content hashes and fingerprints.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("10").unwrap_err(),
            "invalid duration `10`: missing unit (use s, m, h or d, e.g. `24h`)"
        );
        assert_eq!(
            parse_duration("3w").unwrap_err(),
            "invalid duration `3w`: unknown unit `w` (use s, m, h or d, e.g. `24h`)"
        );
        assert!(parse_duration("h").is_err());
    }
}
