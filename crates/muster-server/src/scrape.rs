//! TEMPORARY stub until muster-collect lands.
use std::path::PathBuf;
pub(crate) struct Scraper {
    _dir: PathBuf,
}
impl Scraper {
    pub(crate) fn new(dir: PathBuf) -> Scraper {
        Scraper { _dir: dir }
    }
    pub(crate) fn scrape(
        &mut self,
        _accept: Option<&str>,
    ) -> Result<(&'static str, String), String> {
        Ok(("text/plain; version=0.0.4; charset=utf-8", String::new()))
    }
}
