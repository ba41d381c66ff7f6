//! Paths and the root-owned config file.
