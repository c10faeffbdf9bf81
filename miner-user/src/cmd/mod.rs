pub mod check;
pub mod config_print;
pub mod replay;
pub mod run;
pub mod tail;
