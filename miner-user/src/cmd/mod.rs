pub mod check;
pub mod replay;
pub mod run;
pub mod tail;
