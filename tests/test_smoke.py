def test_health(api):
    answer = api.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": "ok"}


def test_user_factory(make):
    user = make.user()
    assert user.id == 1
