//! `palisadectl`: operate a Palisade mesh.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("palisadectl has no commands yet")
}
