class BatchControlPlane:
    pass
