// fixturedependency.cpp: a shared library that the missing-dependency fixture links against.
int fixtureDependencyValue()
{
    return 3;
}
