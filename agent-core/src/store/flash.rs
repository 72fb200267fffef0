//! A/B object store on NOR flash (issue 5; placeholder).
