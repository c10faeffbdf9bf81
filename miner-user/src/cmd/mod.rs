pub mod check;
pub mod config_print;
pub mod quarantine;
pub mod replay;
pub mod run;
pub mod tail;
