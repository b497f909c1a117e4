//! placeholder
use super::{Context, Result};
use std::sync::Arc;
/// Runs the CronJob controller.
pub async fn run(_ctx: Arc<Context>) -> Result<()> {
    std::future::pending().await
}
