"""Which live sectors `util snap fetch` makes upgrade candidates: CC sectors only. A sector
onboarded with deals by direct data onboarding names no deals in a node's sector info (the
deals were in ProveCommitSectors3's piece manifests), so the manager's own record decides."""

from .test_poster import _service


def test_a_sector_the_manager_sealed_with_deals_is_not_a_candidate(tmp_path):
    svc, _ = _service(tmp_path)
    try:
        assert all(not svc.chain.sector(1000, n).deal_ids for n in (1, 2, 3, 4))    # the chain says: all CC
        svc.state.update(1000, 2, deals=[7])          # the manager sealed sector 2 with deal 7
        assert svc.snapup.fetch(1000, None)["Added"] == [1, 3, 4]
    finally:
        svc.poster.close()
        svc.close()
