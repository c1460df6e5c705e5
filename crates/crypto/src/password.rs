//! Passwords of local accounts: Argon2id (RFC 9106) in the PHC string format.
//!
//! Only the PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) is stored; it
//! carries its own parameters, so hashes made with older parameters keep
//! verifying after [`M_COST`]/[`T_COST`] are raised ([`needs_rehash`] tells
//! the login path to re-hash them). Salts are 16 bytes from aws-lc-rs's
//! CSPRNG ([`crate::random_bytes`]); the output comparison is constant-time
//! (the `phc` crate compares outputs with RustCrypto's `ctutils`).
//!
//! Unknown users must cost the same as wrong passwords, or the login page's
//! response time tells which accounts exist: the caller runs
//! [`dummy_verify`] when there is no account (or it is disabled), which does
//! the same work as a failed [`verify_password`].
//!
//! Trust boundary: passwords come from people and the network. Nothing here
//! logs them or puts them (or any part of them) in an error; they are not
//! kept after the call. Stored hashes come from our own database and are
//! trusted to carry sane parameters.

use argon2::password_hash::phc::PasswordHash;
use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version,
};

use crate::random_bytes;

/// Memory cost in KiB: 19 MiB.
///
/// OWASP's password storage cheat sheet lists five Argon2id settings of equal
/// strength, from m=47104 (46 MiB), t=1 to m=7168 (7 MiB), t=5, all p=1; we
/// take its m=19456, t=2. What decides among them here is that the login
/// endpoint is unauthenticated and runs in the gateway process that also
/// proxies every MCP request: the memory of one verification, times the
/// verifications in flight, is what a login flood can make us allocate (and
/// every unknown user costs one too, see [`dummy_verify`]). RFC 9106 §4's
/// 64 MiB, t=3 would cost a guesser about 5× more (m·t), but also us, and
/// it would put 64 MiB per concurrent login at the mercy of the flood.
/// Measured on the project's 2-core machine (release build): 45 ms a hash;
/// 46 MiB, t=1 takes 85 ms (allocation dominates) and 64 MiB, t=3 190 ms.
/// Raising these later is safe: old hashes keep their parameters and
/// [`needs_rehash`] upgrades them at the next login.
pub const M_COST: u32 = 19_456;
/// Passes over memory (see [`M_COST`]).
pub const T_COST: u32 = 2;
/// Lanes. 1: the `argon2` crate computes lanes one after the other (its
/// `parallel` feature is off), so more lanes would add neither defence (a
/// guesser's cost is m·t either way) nor speed.
pub const P_COST: u32 = 1;
/// Hash output length in bytes (RFC 9106's recommended tag length).
const OUTPUT_LEN: usize = 32;
/// Salt length in bytes (RFC 9106 §3.1 recommends 16).
const SALT_LEN: usize = 16;

/// Shortest accepted password, in characters: NIST SP 800-63B's floor for
/// chosen passwords (its revision 4 asks for 15 where the password is the
/// only factor, which a login policy can add on top).
pub const MIN_CHARS: usize = 8;
/// Longest accepted password, in bytes: long passphrases fit, while a
/// megabyte "password" cannot make the server pre-hash a megabyte.
pub const MAX_BYTES: usize = 1024;

/// Checked at compile time: invalid parameters fail the build, not a login.
const PARAMS: Params = match Params::new(M_COST, T_COST, P_COST, Some(OUTPUT_LEN)) {
    Ok(params) => params,
    Err(_) => panic!("invalid Argon2 parameters"),
};

/// Why a password could not be hashed. Messages are meant for the person
/// who chose the password; none contains it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("the password is too short: use at least {MIN_CHARS} characters")]
    TooShort,
    #[error("the password is too long: use at most {MAX_BYTES} bytes")]
    TooLong,
    #[error("the system random number generator failed")]
    Random,
    /// Argon2 refused the input; unreachable with the checks above, kept
    /// so that a library change surfaces as an error rather than a panic.
    #[error("password hashing failed")]
    Hash,
}

/// Checks the length rules without hashing (e.g. before asking for the
/// password a second time).
pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().count() < MIN_CHARS {
        return Err(PasswordError::TooShort);
    }
    Ok(())
}

/// Hashes a new password with a fresh random salt; returns the PHC string
/// to store. Refuses passwords outside the length rules ([`check_policy`]).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    check_policy(password)?;
    let mut salt = [0u8; SALT_LEN];
    random_bytes(&mut salt).map_err(|_| PasswordError::Random)?;
    let hash = hasher()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|_| PasswordError::Hash)?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string `phc`.
///
/// Takes as long as [`dummy_verify`] for every input: a password longer than
/// [`MAX_BYTES`] or a stored string that is not an Argon2id hash is refused
/// after the same work, so neither makes a known account answer faster than
/// an unknown one. (A hash stored with other parameters takes the time of
/// those parameters; see [`needs_rehash`].)
pub fn verify_password(password: &str, phc: &str) -> bool {
    let parsed = match PasswordHash::new(phc) {
        Ok(parsed) if parsed.algorithm.as_str() == ARGON2ID_IDENT.as_str() => parsed,
        _ => {
            dummy_verify();
            return false;
        }
    };
    if password.len() > MAX_BYTES {
        dummy_verify();
        return false;
    }
    // Parameters, salt and version come from `parsed`, not from `hasher()`.
    hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Does the work of a failed [`verify_password`] against a hash with the
/// current parameters, for a login attempt on an account that does not
/// exist, so that it takes as long as one on an account that does.
pub fn dummy_verify() {
    // The same code path as a real verification: parse, derive with the
    // stored parameters, compare. The all-zero output never matches.
    let dummy = format!(
        "${ARGON2ID_IDENT}$v=19$m={M_COST},t={T_COST},p={P_COST}${salt}${output}",
        salt = "A".repeat(22),
        output = "A".repeat(43),
    );
    if let Ok(parsed) = PasswordHash::new(&dummy) {
        let _ = hasher().verify_password(b"not a password", &parsed);
    }
}

/// Whether a stored hash was made with other parameters (or another
/// algorithm) than new hashes get: after a successful login, re-hash the
/// password and store the new hash.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let same_params = Params::try_from(&parsed).is_ok_and(|p| {
        p.m_cost() == M_COST
            && p.t_cost() == T_COST
            && p.p_cost() == P_COST
            && p.output_len() == Some(OUTPUT_LEN)
    });
    !(parsed.algorithm.as_str() == ARGON2ID_IDENT.as_str()
        && parsed.version == Some(Version::V0x13.into())
        && same_params)
}

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn hash_is_argon2id_phc_with_our_parameters_and_verifies() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(
            phc.starts_with(&format!("$argon2id$v=19$m={M_COST},t={T_COST},p={P_COST}$")),
            "{phc}"
        );
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapl", &phc));
        assert!(!verify_password("Correct horse battery staple", &phc));
        assert!(!needs_rehash(&phc));
    }

    #[test]
    fn same_password_gets_a_new_salt_each_time() {
        let a = hash_password("same password").unwrap();
        let b = hash_password("same password").unwrap();
        assert_ne!(a, b);
        assert!(verify_password("same password", &a) && verify_password("same password", &b));
    }

    #[test]
    fn parameters_meet_the_owasp_minimum() {
        // OWASP: m=19456 KiB, t=2, p=1 at least (or an equivalent m·t).
        const { assert!(M_COST >= 19_456 && T_COST >= 2 && P_COST >= 1) };
        assert_eq!(PARAMS.m_cost(), M_COST);
        assert_eq!(PARAMS.t_cost(), T_COST);
        assert_eq!(PARAMS.p_cost(), P_COST);
    }

    #[test]
    fn length_rules_are_enforced_with_clear_errors() {
        let err = hash_password("1234567").unwrap_err();
        assert!(matches!(err, PasswordError::TooShort));
        assert!(err.to_string().contains("at least 8 characters"), "{err}");
        // Characters, not bytes: 7 two-byte characters are still too short.
        assert!(matches!(
            hash_password("ééééééé").unwrap_err(),
            PasswordError::TooShort
        ));
        assert!(check_policy("éééééééé").is_ok());
        assert!(check_policy(&"x".repeat(MAX_BYTES)).is_ok());
        let err = hash_password(&"x".repeat(MAX_BYTES + 1)).unwrap_err();
        assert!(matches!(err, PasswordError::TooLong));
        assert!(err.to_string().contains("at most 1024 bytes"), "{err}");
    }

    #[test]
    fn errors_never_contain_the_password() {
        for pw in ["hunter2", &"hunter2".repeat(200)] {
            let err = hash_password(pw).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }

    #[test]
    fn garbage_and_foreign_hashes_never_verify() {
        let argon2i = "$argon2i$v=19$m=65536,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$\
            AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for phc in ["", "password", "$argon2id$v=19$", argon2i] {
            assert!(!verify_password("password123", phc), "{phc}");
            assert!(needs_rehash(phc), "{phc}");
        }
        let phc = hash_password("password123").unwrap();
        assert!(!verify_password(&"x".repeat(MAX_BYTES + 1), &phc));
    }

    #[test]
    fn older_parameters_still_verify_but_ask_for_a_rehash() {
        let old = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8_192, 1, 1, Some(OUTPUT_LEN)).unwrap(),
        )
        .hash_password_with_salt(b"password123", &[7; SALT_LEN])
        .unwrap()
        .to_string();
        assert!(old.contains("m=8192,t=1,p=1"), "{old}");
        assert!(verify_password("password123", &old));
        assert!(needs_rehash(&old));
    }

    #[test]
    fn unknown_users_cost_as_much_as_wrong_passwords() {
        let phc = hash_password("password123").unwrap();
        let too_long = "x".repeat(2000);
        let cases: [(&str, &dyn Fn()); 3] = [
            ("a wrong password", &|| {
                assert!(!verify_password("password124", &phc))
            }),
            ("dummy_verify", &dummy_verify),
            ("an over-long password", &|| {
                assert!(!verify_password(&too_long, &phc))
            }),
        ];
        // The fastest of interleaved runs, so that other processes on the
        // machine slow every case alike. The bounds are loose on purpose:
        // what they catch is a path that skips the hash (1000× faster).
        let mut fastest = [Duration::MAX; 3];
        for _ in 0..3 {
            for (best, (_, run)) in fastest.iter_mut().zip(&cases) {
                let start = Instant::now();
                run();
                *best = (*best).min(start.elapsed());
            }
        }
        for ((what, _), took) in cases.iter().zip(fastest).skip(1) {
            let ratio = took.as_secs_f64() / fastest[0].as_secs_f64();
            assert!(
                (0.4..2.5).contains(&ratio),
                "{what} took {took:?}, a wrong password {:?}",
                fastest[0]
            );
        }
    }
}
