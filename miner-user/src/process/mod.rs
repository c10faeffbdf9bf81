pub mod procfs;
pub mod table;
