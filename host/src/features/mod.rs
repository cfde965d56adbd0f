//! What locked towers give the parts trained on them, computed once: the pretrained
//! towers themselves ([`towers::Towers`]) and their feature caches ([`cache`]),
//! keyed by everything the features depend on. Any schedule that trains heads on a
//! locked tower (the photo recipe, VQA on the photo model) reads them from here.

pub mod cache;
pub mod towers;
