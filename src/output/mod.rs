//! Tables, JSON and progress.
