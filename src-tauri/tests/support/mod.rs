// Shared by the end-to-end tests and the benchmark; each uses part of it.
#![allow(dead_code)]

pub mod webdriver;
