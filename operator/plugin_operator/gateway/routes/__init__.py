"""The gateway's route families: each is a class holding the ``Gateway`` (routing table,
authentication, RBAC, admission) whose ``add_routes(router)`` registers its routes."""
