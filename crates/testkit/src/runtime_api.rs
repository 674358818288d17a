//! A Lambda Runtime API server, so the real handler binary can be driven here.
