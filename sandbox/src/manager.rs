//! `SessionManager`: the real [`MachineBackend`]. (Being written: this file is scaffolding.)

use crate::backend::*;
use crate::config::SandboxConfig;
use crate::error::SandboxError;

pub struct SessionManager {
    #[allow(dead_code)]
    cfg: SandboxConfig,
}

impl SessionManager {
    pub fn new(cfg: SandboxConfig) -> Result<Self, SandboxError> {
        Ok(SessionManager { cfg })
    }
}

#[async_trait::async_trait]
impl MachineBackend for SessionManager {
    async fn health(&self) -> Result<(), String> { Err("session machines are not implemented yet".into()) }
    async fn create(&self, id: &str) -> Result<MachineInfo, SandboxError> { Err(SandboxError::StartFailed { id: id.into(), reason: "not implemented yet".into() }) }
    async fn state(&self, _id: &str) -> MachineState { MachineState::Stopped }
    async fn exec(&self, id: &str, _req: ExecRequest) -> Result<ExecOutput, SandboxError> { Err(SandboxError::NotRunning { id: id.into() }) }
    async fn open_terminal(&self, id: &str, _c: u16, _r: u16) -> Result<Terminal, SandboxError> { Err(SandboxError::NotRunning { id: id.into() }) }
    async fn destroy(&self, _id: &str) -> Result<(), SandboxError> { Ok(()) }
    async fn leftovers(&self) -> Vec<String> { Vec::new() }
}
