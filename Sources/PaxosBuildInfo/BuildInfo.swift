/// Which build is running: the release and the git commit it was built from.
///
/// `gitCommit` comes from the `GitCommitPlugin` build-tool plugin (`git rev-parse --short HEAD`
/// at build time, `unknown` outside a git checkout).
public enum BuildInfo {
    /// The release number.
    public static let release = "0.1.0"

    /// The short git commit of the build, or `unknown`.
    public static let commit = gitCommit

    /// What `paxos-node --version`, `paxosctl --version` and `GET /v1/status` report, e.g.
    /// `0.1.0 (3f2a9c1)`.
    public static let version = "\(release) (\(commit))"
}
