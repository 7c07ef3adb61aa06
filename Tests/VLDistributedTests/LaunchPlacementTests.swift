import XCTest

@testable import VLDistributed

final class LaunchPlacementTests: XCTestCase {
    func testPlainProcessIsRankZeroOfOne() {
        let p = LaunchPlacement.fromEnvironment(["PATH": "/usr/bin"])
        XCTAssertEqual(p, LaunchPlacement(rank: 0, size: 1, localRank: 0, localSize: 1, underLauncher: false))
    }

    func testOpenMPIVariables() {
        let p = LaunchPlacement.fromEnvironment([
            "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
            "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
        ])
        XCTAssertEqual(p, LaunchPlacement(rank: 3, size: 4, localRank: 1, localSize: 2, underLauncher: true))
    }

    func testPMIxVariablesWithSlurm() {
        let p = LaunchPlacement.fromEnvironment([
            "PMIX_RANK": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
            "SLURM_NTASKS_PER_NODE": "4",
        ])
        XCTAssertEqual(p, LaunchPlacement(rank: 5, size: 8, localRank: 1, localSize: 4, underLauncher: true))
    }

    func testLibraryVersionNamesOpenMPI() {
        XCTAssertTrue(MPILibrary.versionString.contains("Open MPI"), MPILibrary.versionString)
        XCTAssertTrue(MPILibrary.standardVersion.hasPrefix("3."), MPILibrary.standardVersion)
    }
}
