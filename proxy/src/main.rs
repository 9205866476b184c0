fn main() -> anyhow::Result<()> {
    anyhow::bail!("palisade-proxy is not built yet")
}
