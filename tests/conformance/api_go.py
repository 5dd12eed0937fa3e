"""Every method of Damocles' manager API: the interfaces SealerAPI, SealerCliAPI, RandomnessAPI,
MinerAPI and WorkerWdPoStAPI of damocles-manager/core/api.go, in the file's order, under the
"Venus" namespace (core.APINamespace), at ipfs-force-community/damocles commit
4235a89557219de436bba441e727af3a42f903f0: 60 names."""

API_GO = {f"Venus.{m}" for m in """
    AllocateSector AcquireDeals AssignTicket SubmitPreCommit PollPreCommitState SubmitPersisted SubmitPersistedEx
    WaitSeed SubmitProof PollProofState ReportState ReportFinalized ReportAborted AllocateSanpUpSector
    SubmitSnapUpProof AllocateRebuildSector WorkerPing StoreReserveSpace StoreBasicInfo AllocateUnsealSector
    AchieveUnsealSector AcquireUnsealDest
    ListSectors FindSector FindSectorInAllStates FindSectorsWithDeal FindSectorWithPiece ImportSector RestoreSector
    CheckProvable SimulateWdPoSt SnapUpPreFetch SnapUpCandidates SnapUpCancelCommitment ProvingSectorInfo
    WorkerGetPingInfo WorkerPingInfoList WorkerPingInfoRemove SectorIndexerFind TerminateSector
    PollTerminateSectorState RemoveSector FinalizeSector StoreReleaseReserved StoreList SectorSetForRebuild
    UnsealPiece Version
    GetTicket GetSeed GetWindowPoStChanlleengeRand GetWindowPoStCommitRand
    GetInfo GetMinerConfig
    WdPoStHeartbeatJobs WdPoStAllocateJobs WdPoStFinishJob WdPoStResetJob WdPoStRemoveJob WdPoStAllJobs
""".split()}
