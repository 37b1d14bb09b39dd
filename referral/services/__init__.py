"""The rules of the service, free of HTTP: users, codes and referrals."""
