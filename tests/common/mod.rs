#![allow(dead_code)]
pub mod params;
pub mod vectors;
